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
