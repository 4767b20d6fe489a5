"""The tutorials run from start to end in their short mode on the real SmolLM2 host."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.smollm2
def test_train_and_inspect_short(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    completed = subprocess.run(
        [
            sys.executable,
            str(REPO / "tutorials" / "train_and_inspect.py"),
            "--short",
            "--out",
            str(run_dir),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    out = completed.stdout

    assert "trained on 30,720 activations" in out
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0.0 < metrics["fvu"] < 1.0
    assert metrics["ce_loss_recovered"] > 0.0
    latent_headers = re.findall(r"^latent \d+ \(fires on", out, flags=re.MULTILINE)
    assert len(latent_headers) == 3
    # three contexts per latent, each with the activating token marked
    assert out.count("[[") == 9


@pytest.mark.smollm2
def test_steering_short(tmp_path: Path) -> None:
    completed = subprocess.run(
        [
            sys.executable,
            str(REPO / "tutorials" / "steering.py"),
            "--short",
            "--out",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    out = completed.stdout

    assert re.search(r"^SAE from \S+: \d+ latents at blocks.6.hook_resid_post", out, re.MULTILINE)
    assert len(re.findall(r"^latent \d+: fires on", out, flags=re.MULTILINE)) == 3
    spliced = re.search(r"^SAE spliced, no edit\s+([\d.]+)\s+([\d.]+)$", out, re.MULTILINE)
    ablated = re.search(r"^concept latents ablated\s+([\d.]+)\s+([\d.]+)$", out, re.MULTILINE)
    assert spliced and ablated
    # Ablating the concept latents costs more at the word than elsewhere.
    rise_at_word = float(ablated[1]) - float(spliced[1])
    rise_elsewhere = float(ablated[2]) - float(spliced[2])
    assert rise_at_word > rise_elsewhere
    plain = re.search(r"^plain:\s+(.*)$", out, re.MULTILINE)
    steered = re.search(r"^steered:\s+(.*) \(latent \d+ raised by", out, re.MULTILINE)
    assert plain and steered
    assert plain[1] != steered[1]
    # The steered continuation moved toward the concept: it uses the word more often, and the
    # concept latent fires on more of its tokens when the model reads it back unsteered.
    words = re.search(r"^words starting with 'music'\s+(\d+)\s+(\d+)$", out, re.MULTILINE)
    fires = re.search(r"^tokens latent \d+ fires on\s+(\d+)%\s+(\d+)%$", out, re.MULTILINE)
    assert words and fires
    assert int(words[2]) > int(words[1])
    assert int(fires[2]) > int(fires[1])
