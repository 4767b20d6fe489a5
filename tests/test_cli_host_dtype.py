"""``saehooks train --host-dtype``: train on a bfloat16 host, evaluate in the float32 one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from saehooks.cli import main
from saehooks.training.config import DataConfig
from saehooks.training.pipeline import cpu_supports_bfloat16, load_training_host


def train_run(run_dir: Path, model_dir: Path, corpus: Path, host_dtype: str) -> Path:
    arguments = [
        "train", "--out", str(run_dir), "--model", str(model_dir), "--corpus", str(corpus),
        "--hook-name", "blocks.1.hook_resid_post", "--context-size", "16",
        "--harvest-batch-size", "4", "--buffer-tokens", "256", "--eval-fraction", "0.2",
        "--batch-size", "32", "--tokens", "256", "--lr-warmup-steps", "0", "--d-sae", "64",
        "--k", "4", "--eval-tokens", "64", "--quiet", "--host-dtype", host_dtype,
    ]  # fmt: skip
    assert main(arguments) == 0
    return run_dir


def test_host_dtype_reaches_training_not_evaluation(
    tiny_model_dir: Path, tiny_word_corpus: Path, tmp_path: Path
) -> None:
    runs = {
        dtype: train_run(tmp_path / dtype, tiny_model_dir, tiny_word_corpus, dtype)
        for dtype in ("float32", "bfloat16")
    }
    first_steps = {
        dtype: json.loads((run / "train_metrics.jsonl").read_text().splitlines()[0])
        for dtype, run in runs.items()
    }
    metrics = {dtype: json.loads((run / "metrics.json").read_text()) for dtype, run in runs.items()}
    recorded = json.loads((runs["bfloat16"] / "run.json").read_text())

    assert recorded["data"]["host_dtype"] == "bfloat16"
    # Same tokens and seeds, so only the host dtype can change the first step's input.
    assert first_steps["bfloat16"]["loss/mse"] != first_steps["float32"]["loss/mse"]
    # Both evaluations ran the float32 host on the same held-out tokens.
    assert metrics["bfloat16"]["ce_loss_clean"] == metrics["float32"]["ce_loss_clean"]


@pytest.mark.parametrize("host_dtype", ["float32", "bfloat16"])
def test_bfloat16_host_warns_without_cpu_support(
    tiny_model_dir: Path, host_dtype: str, caplog: pytest.LogCaptureFixture
) -> None:
    data_cfg = DataConfig(model=str(tiny_model_dir), context_size=16, host_dtype=host_dtype)
    with caplog.at_level("WARNING", logger="saehooks.training.pipeline"):
        load_training_host(data_cfg)
    warned = any("without bfloat16 instructions" in r.getMessage() for r in caplog.records)
    # The CPU decides which case runs here, and oneDNN's report gives the expected outcome.
    expected = host_dtype == "bfloat16" and cpu_supports_bfloat16() is False
    assert warned == expected
