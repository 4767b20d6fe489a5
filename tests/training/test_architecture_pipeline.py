"""The new architectures through the pipeline on the tiny host: train, save, load, evaluate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_pipeline import configs, word_corpus  # noqa: F401  # word_corpus is a fixture

from saehooks.evaluation.saved_run import evaluate_saved
from saehooks.hosts import TransformerLensHost
from saehooks.io import load_sae
from saehooks.sae import GatedSAE, JumpReLUSAE, SAEConfig
from saehooks.training.pipeline import train_sae

SETTINGS = {
    "batchtopk": ({"k": 4}, JumpReLUSAE),
    "matryoshka": ({"k": 4, "matryoshka_widths": (16, 64)}, JumpReLUSAE),
    "jumprelu": ({"k": None}, JumpReLUSAE),
    "gated": ({"k": None}, GatedSAE),
}


@pytest.mark.parametrize("architecture", sorted(SETTINGS))
def test_pipeline_trains_saves_and_evaluates(
    architecture: str,
    tiny_host: TransformerLensHost,
    tiny_model_dir: Path,
    word_corpus: Path,  # noqa: F811  # the fixture imported above
    tmp_path: Path,
) -> None:
    settings, loaded_class = SETTINGS[architecture]
    data_cfg, train_cfg = configs(tiny_model_dir, word_corpus, tokens=640)
    sae_cfg = SAEConfig(d_in=32, d_sae=64, architecture=architecture, **settings)
    outcome = train_sae(
        sae_cfg, data_cfg, train_cfg, tmp_path / "run", host=tiny_host, progress=False
    )
    assert outcome.result.steps == 20

    sae = load_sae(outcome.sae_dir)
    assert type(sae) is loaded_class
    metadata = json.loads((outcome.sae_dir / "cfg.json").read_text())["metadata"]
    if loaded_class is JumpReLUSAE and architecture != "jumprelu":
        assert metadata["trained_architecture"] == architecture
        assert metadata["threshold_updates"] == 20

    result, _ = evaluate_saved(tmp_path / "run", eval_tokens=256, batch_size=4, host=tiny_host)
    assert 0.0 <= result.fvu < 1.5
    assert result.l0 > 0
