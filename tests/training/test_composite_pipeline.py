"""Composite SAEs train, save and evaluate end to end on the tiny host, from Python and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from saehooks.cli import main
from saehooks.evaluation.saved_run import evaluate_saved
from saehooks.hosts import TransformerLensHost
from saehooks.io import load_sae
from saehooks.sae import MixtureConfig, MixtureOfExperts
from saehooks.training.config import DataConfig, TrainingConfig
from saehooks.training.pipeline import train_sae

HOOK = "blocks.1.hook_resid_post"


@pytest.fixture(scope="module")
def word_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of 60 text files written in the tiny model's vocabulary (w0 .. w60)."""
    folder = tmp_path_factory.mktemp("corpus")
    generator = torch.Generator().manual_seed(3)
    for index in range(60):
        n_words = int(torch.randint(5, 40, (1,), generator=generator))
        words = torch.randint(0, 61, (n_words,), generator=generator)
        (folder / f"doc{index:03d}.txt").write_text(" ".join(f"w{int(w)}" for w in words))
    return folder


def test_mixture_trains_saves_and_evaluates(
    tiny_host: TransformerLensHost, tiny_model_dir: Path, word_corpus: Path, tmp_path: Path
) -> None:
    data_cfg = DataConfig(
        model=str(tiny_model_dir),
        hook_name=HOOK,
        corpus=str(word_corpus),
        context_size=16,
        harvest_batch_size=4,
        buffer_tokens=256,
        eval_fraction=0.2,
    )
    train_cfg = TrainingConfig(total_tokens=1600, batch_size=32, lr=3e-3, lr_warmup_steps=5)
    sae_cfg = MixtureConfig(d_in=32, d_sae=64, n_experts=4, experts_per_token=2, k=2)
    outcome = train_sae(
        sae_cfg, data_cfg, train_cfg, tmp_path / "run", host=tiny_host, progress=False
    )

    lines = [json.loads(line) for line in (tmp_path / "run/train_metrics.jsonl").open()]
    assert len(lines) == 50
    assert lines[-1]["loss/fvu"] < lines[0]["loss/fvu"]
    assert "loss/balance" in lines[-1]
    sae = load_sae(outcome.sae_dir)
    assert isinstance(sae, MixtureOfExperts)
    assert sae.cfg.hook_name == HOOK
    run = json.loads((tmp_path / "run/run.json").read_text())
    assert run["sae"]["architecture"] == "moe"

    result, _ = evaluate_saved(tmp_path / "run", eval_tokens=256, batch_size=4, host=tiny_host)
    assert result.l0 <= 4.0
    assert 0.0 <= result.fvu < 1.0


def test_cli_trains_a_hierarchical_sae(
    tiny_model_dir: Path, word_corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    status = main(
        [
            "train", "--out", str(run_dir), "--model", str(tiny_model_dir),
            "--corpus", str(word_corpus), "--hook-name", HOOK, "--context-size", "16",
            "--buffer-tokens", "256", "--batch-size", "32", "--tokens", "640",
            "--architecture", "hierarchical", "--d-sae", str(8 * 5), "--child-size", "4",
            "--k", "2", "--child-k", "1", "--eval-tokens", "128", "--quiet",
        ]
    )
    assert status == 0
    cfg = json.loads((run_dir / "sae/cfg.json").read_text())
    assert cfg["architecture"] == "hierarchical"
    assert (cfg["d_sae"], cfg["child_size"], cfg["k"], cfg["child_k"]) == (40, 4, 2, 1)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["l0"] <= 2 + 2 * 1
    assert "CE loss recovered" in capsys.readouterr().out
