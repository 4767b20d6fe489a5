"""``saehooks train`` then ``saehooks eval`` on a tiny real model, run as a user runs them."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from saehooks.evaluation.saved_run import evaluate_saved
from saehooks.hosts import TransformerLensHost

HOOK = "blocks.1.hook_resid_post"
CONTEXT_SIZE = 16  # 15 tokens after BOS
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run_cli(*arguments: str, umask: int = 0o022) -> subprocess.CompletedProcess[str]:
    """Run ``python -m saehooks.cli`` offline with ``umask``, and require exit status 0."""
    completed = subprocess.run(
        [sys.executable, "-m", "saehooks.cli", *arguments],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
        preexec_fn=lambda: os.umask(umask),
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed


@pytest.fixture(scope="module")
def trained_run(
    tiny_model_dir: Path, tiny_word_corpus: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    run_cli(
        "train", "--out", str(run_dir), "--model", str(tiny_model_dir),
        "--corpus", str(tiny_word_corpus), "--hook-name", HOOK, "--context-size", str(CONTEXT_SIZE),
        "--harvest-batch-size", "4", "--buffer-tokens", "256", "--eval-fraction", "0.2",
        "--batch-size", "32", "--tokens", "3200", "--lr", "0.003", "--lr-warmup-steps", "5",
        "--d-sae", "64", "--k", "4", "--eval-tokens", "0", "--quiet",
    )  # fmt: skip
    return run_dir


def test_cli_eval_writes_consistent_files(
    trained_run: Path, tiny_host: TransformerLensHost
) -> None:
    # 37 tokens are less than one batch of 8 contexts (120 tokens after BOS).
    completed = run_cli("eval", str(trained_run), "--eval-tokens", "37", umask=0o027)
    assert "CE loss recovered" in completed.stdout
    assert f"metrics written to {trained_run / 'metrics.json'}" in completed.stdout

    metrics = json.loads((trained_run / "metrics.json").read_text())
    report = (trained_run / "report.md").read_text()
    pictures = [trained_run / "feature_density.png", trained_run / "l0_histogram.png"]
    assert metrics["n_tokens"] == 37
    assert 0.0 < metrics["fvu"] < 1.0
    assert 0.0 < metrics["l0"] <= 4.0
    assert report.startswith("# Evaluation of topk SAE at blocks.1.hook_resid_post")
    assert "37 real tokens" in report
    for picture in pictures:
        assert picture.read_bytes().startswith(PNG_SIGNATURE)
        assert f"]({picture.name})" in report
    # New files get 0o666 less the umask, as open() gives them.
    for path in [trained_run / "metrics.json", trained_run / "report.md", *pictures]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o640, path
    assert not list(trained_run.glob(".*.tmp"))

    # The same evaluation from Python gives the same numbers.
    result, _ = evaluate_saved(trained_run, 37, host=tiny_host, progress=False, report=False)
    for key, value in result.to_dict().items():
        assert metrics[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key


@pytest.mark.parametrize("eval_tokens", [2, 15, 16, 121])
def test_eval_counts_requested_tokens(
    trained_run: Path, tiny_host: TransformerLensHost, eval_tokens: int
) -> None:
    result, _ = evaluate_saved(
        trained_run, eval_tokens, host=tiny_host, progress=False, report=False
    )
    assert result.n_tokens == eval_tokens


def test_eval_of_bare_sae_folder_writes_beside_it(trained_run: Path, tmp_path: Path) -> None:
    dictionary = tmp_path / "dictionary"
    shutil.copytree(trained_run / "sae", dictionary)
    files_before = sorted(path.name for path in dictionary.iterdir())

    completed = run_cli("eval", str(dictionary), "--eval-tokens", "16")

    evaluation = tmp_path / "dictionary-eval"
    assert sorted(path.name for path in dictionary.iterdir()) == files_before
    assert json.loads((evaluation / "metrics.json").read_text())["n_tokens"] == 16
    assert (evaluation / "report.md").is_file()
    assert f"metrics written to {evaluation / 'metrics.json'}" in completed.stdout
    assert f"report and plots written to {evaluation}" in completed.stdout


def test_eval_out_and_corpus_keep_run_metrics(
    trained_run: Path, tiny_word_corpus: Path, tiny_host: TransformerLensHost, tmp_path: Path
) -> None:
    run_metrics = trained_run / "metrics.json"
    evaluate_saved(trained_run, 16, host=tiny_host, progress=False, report=False)
    metrics_before = run_metrics.read_bytes()

    _, corpus_metrics = evaluate_saved(
        trained_run, 17, host=tiny_host, corpus=str(tiny_word_corpus), progress=False
    )
    assert corpus_metrics == trained_run / f"eval-{tiny_word_corpus.name}" / "metrics.json"
    assert json.loads(corpus_metrics.read_text())["n_tokens"] == 17
    assert run_metrics.read_bytes() == metrics_before

    chosen = tmp_path / "chosen" / "folder"
    completed = run_cli("eval", str(trained_run), "--eval-tokens", "18", "--out", str(chosen))
    assert json.loads((chosen / "metrics.json").read_text())["n_tokens"] == 18
    assert (chosen / "report.md").is_file()
    assert f"report and plots written to {chosen}" in completed.stdout
    assert run_metrics.read_bytes() == metrics_before
