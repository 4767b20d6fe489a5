"""The pretrained-dictionary tutorial runs from start to end in its short mode on SmolLM2."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.smollm2
def test_pretrained_tutorial_short() -> None:
    completed = subprocess.run(
        [sys.executable, str(REPO / "tutorials" / "pretrained.py"), "--short"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    out = completed.stdout

    assert "loaded smollm2-l6-topk32: topk k=32, d_sae 4608" in out
    assert re.search(r"^clean +next tokens: \[", out, flags=re.MULTILINE)
    assert re.search(r"^spliced +next tokens: \[", out, flags=re.MULTILINE)
    assert "measured on 2,032 held-out tokens" in out
    latent_headers = re.findall(r"^latent \d+ \(fires on", out, flags=re.MULTILINE)
    assert len(latent_headers) == 3
    assert out.count("[[") == 9
