"""A remedy is chosen from the config and the command line, and runs inside the pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from saehooks.cli import build_parser
from saehooks.config_args import config_from_args
from saehooks.hosts import TransformerLensHost
from saehooks.resampling import (
    REMEDY_NAMES,
    AnthropicResampling,
    AuxK,
    BiasBoost,
    GhostGrads,
    RandomReinit,
    RemedyConfig,
    ResidualSVDResampling,
    build_remedies,
)
from saehooks.sae import SAEConfig
from saehooks.training.config import DataConfig, TrainingConfig
from saehooks.training.pipeline import train_sae


def test_cli_options_build_remedy_config() -> None:
    args = build_parser().parse_args(
        [
            "train",
            "--remedy",
            "auxk",
            "--k-aux",
            "64",
            "--aux-coefficient",
            "0.5",
            "--frequency-method",
            "ema",
            "--resample-max-latents",
            "none",
        ]
    )
    cfg = config_from_args(RemedyConfig, args)
    assert cfg == RemedyConfig(remedy="auxk", k_aux=64, aux_coefficient=0.5, frequency_method="ema")


def test_cli_rejects_unknown_remedy(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--remedy", "magic"])
    assert "invalid choice: 'magic'" in capsys.readouterr().err


def test_build_remedies_maps_every_name() -> None:
    expected = {
        "anthropic": AnthropicResampling,
        "ghost_grads": GhostGrads,
        "auxk": AuxK,
        "reinit": RandomReinit,
        "residual_svd": ResidualSVDResampling,
        "bias_boost": BiasBoost,
    }
    assert set(expected) | {"none"} == set(REMEDY_NAMES)
    for name, cls in expected.items():
        (remedy,) = build_remedies(RemedyConfig(remedy=name))  # type: ignore[arg-type]
        assert type(remedy) is cls
    assert build_remedies(RemedyConfig()) == []
    assert build_remedies(None) == []


@pytest.mark.parametrize(
    "settings,message",
    [
        ({"remedy": "resample"}, "remedy='resample'"),
        ({"frequency_method": "count"}, "frequency_method='count'"),
        ({"resample_max_latents": 0}, "resample_max_latents=0"),
        ({"k_aux": 0}, "k_aux=0"),
        ({"dead_frequency": 0.0}, "dead_frequency=0.0"),
    ],
)
def test_remedy_config_errors_name_the_field(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RemedyConfig(**settings)


def test_pipeline_logs_resampling(
    tiny_host: TransformerLensHost, tiny_model_dir: Path, tmp_path: Path
) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    generator = torch.Generator().manual_seed(4)
    for index in range(40):
        words = torch.randint(0, 61, (30,), generator=generator)
        (corpus / f"doc{index:02d}.txt").write_text(" ".join(f"w{int(w)}" for w in words))
    data_cfg = DataConfig(
        model=str(tiny_model_dir),
        hook_name="blocks.1.hook_resid_post",
        corpus=str(corpus),
        context_size=16,
        harvest_batch_size=4,
        buffer_tokens=256,
        eval_fraction=0.2,
    )
    train_cfg = TrainingConfig(
        total_tokens=40 * 32, batch_size=32, lr=3e-3, lr_warmup_steps=2, dead_window_tokens=64
    )
    remedy_cfg = RemedyConfig(
        remedy="anthropic", resample_interval_steps=10, resample_sample_tokens=128
    )
    # 256 latents with k=2 on 32 tokens a step: most latents go a 64-token window without firing
    sae_cfg = SAEConfig(d_in=32, d_sae=256, architecture="topk", k=2)
    outcome = train_sae(
        sae_cfg,
        data_cfg,
        train_cfg,
        tmp_path / "run",
        host=tiny_host,
        progress=False,
        remedy_cfg=remedy_cfg,
    )

    lines = [json.loads(line) for line in (tmp_path / "run" / "train_metrics.jsonl").open()]
    resampled = [line["dead/resampled"] for line in lines]
    assert [step for step, count in enumerate(resampled, 1) if count > 0] == [10, 20, 30, 40]
    assert lines[-1]["dead/resample_events"] == 4.0
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["remedy"]["remedy"] == "anthropic"
    assert outcome.result.steps == 40
