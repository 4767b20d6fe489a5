"""The main job end to end on a tiny real host: harvest, buffer, train, save, evaluate."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from saehooks.cli import main
from saehooks.evaluation.saved_run import evaluate_saved
from saehooks.hosts import TransformerLensHost
from saehooks.io import load_sae
from saehooks.sae import SAEConfig
from saehooks.training.config import DataConfig, TrainingConfig
from saehooks.training.pipeline import RunFolder, activation_width, train_sae

METRIC_KEYS = {
    "fvu",
    "l0",
    "ce_loss_clean",
    "ce_loss_spliced",
    "ce_loss_zero",
    "ce_loss_recovered",
    "kl_div",
    "dead_fraction",
}


@pytest.fixture(scope="module")
def word_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of 120 text files written in the tiny model's vocabulary (w0 .. w60)."""
    folder = tmp_path_factory.mktemp("corpus")
    generator = torch.Generator().manual_seed(3)
    for index in range(120):
        words = torch.randint(
            0, 61, (int(torch.randint(5, 40, (1,), generator=generator)),), generator=generator
        )
        (folder / f"doc{index:03d}.txt").write_text(" ".join(f"w{int(w)}" for w in words))
    return folder


def configs(model_dir: Path, corpus: Path, tokens: int) -> tuple[DataConfig, TrainingConfig]:
    data_cfg = DataConfig(
        model=str(model_dir),
        hook_name="blocks.1.hook_resid_post",
        corpus=str(corpus),
        context_size=16,
        harvest_batch_size=4,
        buffer_tokens=256,
        eval_fraction=0.2,
    )
    train_cfg = TrainingConfig(total_tokens=tokens, batch_size=32, lr=3e-3, lr_warmup_steps=5)
    return data_cfg, train_cfg


def test_train_save_evaluate(
    tiny_host: TransformerLensHost, tiny_model_dir: Path, word_corpus: Path, tmp_path: Path
) -> None:
    data_cfg, train_cfg = configs(tiny_model_dir, word_corpus, tokens=3200)
    sae_cfg = SAEConfig(d_in=32, d_sae=64, architecture="topk", k=4)
    outcome = train_sae(
        sae_cfg, data_cfg, train_cfg, tmp_path / "run", host=tiny_host, progress=False
    )

    assert outcome.result.steps == 100
    assert not outcome.result.interrupted
    lines = (tmp_path / "run" / "train_metrics.jsonl").read_text().splitlines()
    assert len(lines) == 100
    assert json.loads(lines[-1])["loss/fvu"] < json.loads(lines[0])["loss/fvu"]

    sae = load_sae(outcome.sae_dir)
    assert sae.cfg.hook_name == "blocks.1.hook_resid_post"
    assert sae.cfg.model_name == tiny_host.model_name
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["training"]["total_tokens"] == 3200

    result, metrics_path = evaluate_saved(
        tmp_path / "run", eval_tokens=512, batch_size=4, host=tiny_host
    )
    metrics = json.loads(metrics_path.read_text())
    assert metrics_path == tmp_path / "run" / "metrics.json"
    assert METRIC_KEYS <= set(metrics)
    assert metrics["l0"] <= 4.0
    assert 0.0 <= metrics["fvu"] < 1.0
    assert metrics["fvu"] == pytest.approx(result.fvu)


def test_live_training_harvests_only_what_it_trains_on(
    tiny_host: TransformerLensHost,
    tiny_model_dir: Path,
    word_corpus: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 1,000 tokens in batches of 32 trains on 32 batches, 1,024 activations. Each harvest of 4
    # contexts gives 4 * 15 = 60 (BOS dropped), so 18 harvests (1,080) cover them, where the
    # buffer of 256 would otherwise keep refilling to the end.
    data_cfg, train_cfg = configs(tiny_model_dir, word_corpus, tokens=1000)
    harvested: list[int] = []
    harvest = tiny_host.harvest

    def counting_harvest(tokens: torch.Tensor, hooks: list[str]) -> dict[str, torch.Tensor]:
        harvested.append(tokens.numel())
        return harvest(tokens, hooks)

    monkeypatch.setattr(tiny_host, "harvest", counting_harvest)
    sae_cfg = SAEConfig(d_in=32, d_sae=64, architecture="topk", k=4)
    outcome = train_sae(
        sae_cfg, data_cfg, train_cfg, tmp_path / "run", host=tiny_host, progress=False
    )
    assert outcome.result.tokens == 1024
    # The first harvest is activation_width's probe of 2 tokens.
    assert harvested == [2] + [4 * 16] * 18


def test_wrong_d_in_names_the_width(
    tiny_host: TransformerLensHost, tiny_model_dir: Path, word_corpus: Path, tmp_path: Path
) -> None:
    data_cfg, train_cfg = configs(tiny_model_dir, word_corpus, tokens=64)
    assert activation_width(tiny_host, "blocks.1.hook_resid_post") == 32
    with pytest.raises(ValueError, match="set d_in=32"):
        train_sae(
            SAEConfig(d_in=48, d_sae=64, k=4),
            data_cfg,
            train_cfg,
            tmp_path,
            host=tiny_host,
            progress=False,
        )


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_cli_stop_signal_saves_what_was_trained(
    stop_signal: signal.Signals, tiny_model_dir: Path, word_corpus: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "saehooks.cli",
        "train",
        "--out",
        str(run_dir),
        "--model",
        str(tiny_model_dir),
        "--corpus",
        str(word_corpus),
        "--hook-name",
        "blocks.1.hook_resid_post",
        "--context-size",
        "16",
        "--buffer-tokens",
        "256",
        "--batch-size",
        "32",
        "--d-sae",
        "64",
        "--k",
        "4",
        "--tokens",
        "100000000",
        "--eval-tokens",
        "0",
        "--quiet",
    ]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    metrics_path = run_dir / "train_metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if metrics_path.exists() and len(metrics_path.read_text().splitlines()) >= 20:
            break
        time.sleep(0.2)
    assert process.poll() is None, process.communicate()[1]
    process.send_signal(stop_signal)
    stdout, stderr = process.communicate(timeout=120)

    assert process.returncode == 130, stderr
    assert "training interrupted" in stdout
    assert f"SAE saved to {run_dir / 'sae'}" in stdout
    assert "evaluation skipped" in stdout
    sae = load_sae(run_dir / "sae")
    steps = len(metrics_path.read_text().splitlines())
    assert json.loads((run_dir / "run.json").read_text())["result"]["steps"] == steps
    assert sae.cfg.d_sae == 64


def test_existing_run_needs_overwrite(
    tiny_host: TransformerLensHost, tiny_model_dir: Path, word_corpus: Path, tmp_path: Path
) -> None:
    data_cfg, train_cfg = configs(tiny_model_dir, word_corpus, tokens=64)
    sae_cfg = SAEConfig(d_in=32, d_sae=64, architecture="topk", k=4)
    run_dir = tmp_path / "run"
    train_sae(sae_cfg, data_cfg, train_cfg, run_dir, host=tiny_host, progress=False)
    (run_dir / "metrics.json").write_text("{}")

    with pytest.raises(FileExistsError, match="--overwrite"):
        train_sae(sae_cfg, data_cfg, train_cfg, run_dir, host=tiny_host, progress=False)
    bigger = SAEConfig(d_in=32, d_sae=96, architecture="topk", k=4)
    train_sae(bigger, data_cfg, train_cfg, run_dir, host=tiny_host, progress=False, overwrite=True)
    assert load_sae(run_dir / "sae").cfg.d_sae == 96
    assert not (run_dir / "metrics.json").exists()


def test_run_folder_that_is_a_file_raises(
    tiny_host: TransformerLensHost, tiny_model_dir: Path, word_corpus: Path, tmp_path: Path
) -> None:
    data_cfg, train_cfg = configs(tiny_model_dir, word_corpus, tokens=64)
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    with pytest.raises(ValueError, match="is a file"):
        train_sae(
            SAEConfig(d_in=32, d_sae=64, k=4),
            data_cfg,
            train_cfg,
            afile,
            host=tiny_host,
            progress=False,
        )
    assert afile.read_text() == "keep me"


def folder_contents(folder: Path) -> dict[Path, bytes]:
    return {
        path.relative_to(folder): path.read_bytes() for path in folder.rglob("*") if path.is_file()
    }


def trained_run(host: TransformerLensHost, model_dir: Path, corpus: Path, run_dir: Path) -> None:
    """Train a 64-latent TopK SAE on 64 tokens into ``run_dir``."""
    data_cfg, train_cfg = configs(model_dir, corpus, tokens=64)
    sae_cfg = SAEConfig(d_in=32, d_sae=64, architecture="topk", k=4)
    train_sae(sae_cfg, data_cfg, train_cfg, run_dir, host=host, progress=False)


def test_failed_overwrite_keeps_old_run(
    tiny_host: TransformerLensHost, tiny_model_dir: Path, word_corpus: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    trained_run(tiny_host, tiny_model_dir, word_corpus, run_dir)
    (run_dir / "metrics.json").write_text('{"fvu": 0.5}')
    data_cfg, train_cfg = configs(tiny_model_dir, word_corpus, tokens=64)
    before = folder_contents(run_dir)

    # A corpus too short for one context fails while the first buffer fills, after the old run
    # has been moved aside.
    short_corpus = tmp_path / "short"
    short_corpus.mkdir()
    for index in range(5):
        (short_corpus / f"doc{index}.txt").write_text("w1 w2")
    short_cfg = dataclasses.replace(data_cfg, corpus=str(short_corpus))
    bigger = SAEConfig(d_in=32, d_sae=96, architecture="topk", k=4)
    with pytest.raises(ValueError, match="no full context"):
        train_sae(
            bigger, short_cfg, train_cfg, run_dir, host=tiny_host, progress=False, overwrite=True
        )
    after = folder_contents(run_dir)
    assert after == before
    assert load_sae(run_dir / "sae").cfg.d_sae == 64


def test_failed_first_run_removes_new_folder(
    tiny_host: TransformerLensHost, tiny_model_dir: Path, word_corpus: Path, tmp_path: Path
) -> None:
    data_cfg, train_cfg = configs(tiny_model_dir, word_corpus, tokens=64)
    run_dir = tmp_path / "run"
    wrong_width = SAEConfig(d_in=31, d_sae=64, architecture="topk", k=4)
    with pytest.raises(ValueError, match="d_in=31"):
        train_sae(wrong_width, data_cfg, train_cfg, run_dir, host=tiny_host, progress=False)
    assert not run_dir.exists()


def test_killed_overwrite_restores_old_run(
    tiny_host: TransformerLensHost, tiny_model_dir: Path, word_corpus: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    trained_run(tiny_host, tiny_model_dir, word_corpus, run_dir)
    # What a SIGKILL during an overwrite leaves: the old run moved aside, a partial new one.
    RunFolder(run_dir, overwrite=True)
    (run_dir / "train_metrics.jsonl").write_text('{"step": 1}\n')
    assert not (run_dir / "run.json").exists()

    with pytest.raises(FileExistsError, match="--overwrite"):
        RunFolder(run_dir, overwrite=False)
    assert load_sae(run_dir / "sae").cfg.d_sae == 64
    assert len((run_dir / "train_metrics.jsonl").read_text().splitlines()) > 1
    assert not (run_dir / ".previous-run").exists()


def test_cli_interrupt_before_training_cleans_up(
    tiny_model_dir: Path, word_corpus: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "saehooks.cli", "train", "--out", str(run_dir)]
    command += ["--model", str(tiny_model_dir), "--corpus", str(word_corpus)]
    command += ["--hook-name", "blocks.1.hook_resid_post", "--context-size", "16"]
    # A buffer this large takes minutes to fill, so the signal lands before the first step.
    command += ["--buffer-tokens", "50000000", "--batch-size", "32", "--d-sae", "64"]
    command += ["--k", "4", "--tokens", "100000000", "--eval-tokens", "0", "--quiet"]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None and not run_dir.exists():
        time.sleep(0.1)
    time.sleep(2)
    assert process.poll() is None, process.communicate()[1]
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)

    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("interrupted;")
    assert "training" not in stdout
    assert not run_dir.exists()


def test_context_size_above_model_max_raises(
    tiny_host: TransformerLensHost, tiny_model_dir: Path, word_corpus: Path, tmp_path: Path
) -> None:
    data_cfg, train_cfg = configs(tiny_model_dir, word_corpus, tokens=64)
    too_long = dataclasses.replace(data_cfg, context_size=65)  # the tiny model's n_ctx is 64
    sae_cfg = SAEConfig(d_in=32, d_sae=64, architecture="topk", k=4)
    with pytest.raises(ValueError, match="context_size=65 exceeds the maximum context") as error:
        train_sae(sae_cfg, too_long, train_cfg, tmp_path / "run", host=tiny_host, progress=False)
    assert "at most 64" in str(error.value)
    assert not (tmp_path / "run").exists()

    longest = dataclasses.replace(data_cfg, context_size=64)
    train_sae(sae_cfg, longest, train_cfg, tmp_path / "run", host=tiny_host, progress=False)
    assert (tmp_path / "run" / "run.json").exists()


def test_cli_context_size_above_max_rejected(
    tiny_model_dir: Path, word_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for command in ("train", "harvest"):
        out = tmp_path / command
        hook_flag = "--hook-name" if command == "train" else "--hook-names"
        batch_flags = ["--batch-size", "32"] if command == "train" else []
        exit_code = main(
            [command, "--out", str(out), "--model", str(tiny_model_dir)]
            + ["--corpus", str(word_corpus), hook_flag, "blocks.1.hook_resid_post"]
            + ["--context-size", "100", "--tokens", "64", "--quiet", *batch_flags]
        )
        stderr = capsys.readouterr().err
        assert exit_code == 2, command
        assert "--context-size=100 exceeds the maximum context" in stderr, command
        assert "set --context-size to at most 64" in stderr, command
        assert not out.exists(), command


def test_cli_batch_size_above_tokens_rejected(
    tiny_model_dir: Path, word_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exit_code = main(
        ["train", "--out", str(tmp_path / "run"), "--model", str(tiny_model_dir)]
        + ["--corpus", str(word_corpus), "--hook-name", "blocks.1.hook_resid_post"]
        + ["--context-size", "16", "--tokens", "100", "--batch-size", "128", "--quiet"]
    )
    stderr = capsys.readouterr().err
    assert exit_code == 2
    assert "--batch-size=128 exceeds --tokens=100" in stderr
    assert "lower --batch-size or raise --tokens" in stderr
    assert not (tmp_path / "run").exists()
