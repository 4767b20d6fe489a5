"""Command-line options come from the config dataclasses, with their docs as help."""

from __future__ import annotations

import argparse

import pytest

from saehooks.cli import build_parser
from saehooks.config_args import add_config_arguments, config_from_args, field_docs
from saehooks.training.config import DataConfig, TrainingConfig


def test_field_docs_read_attribute_docstrings() -> None:
    docs = field_docs(TrainingConfig)
    assert docs["batch_size"] == "Activations per optimiser step."
    assert set(docs) == set(TrainingConfig.__dataclass_fields__)


def test_train_options_build_configs() -> None:
    args = build_parser().parse_args(
        [
            "train",
            "--tokens",
            "5000",
            "--lr",
            "0.002",
            "--grad-clip-norm",
            "none",
            "--no-drop-bos",
            "--b-dec-init",
            "mean",
            "--hook-name",
            "blocks.3.hook_resid_post",
        ]
    )
    train_cfg = config_from_args(TrainingConfig, args)
    data_cfg = config_from_args(DataConfig, args)
    assert train_cfg.total_tokens == 5000
    assert train_cfg.lr == 0.002
    assert train_cfg.grad_clip_norm is None
    assert train_cfg.b_dec_init == "mean"
    assert data_cfg.drop_bos is False
    assert data_cfg.hook_name == "blocks.3.hook_resid_post"
    assert data_cfg.corpus == "wiki"


def test_invalid_choice_is_rejected(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--b-dec-init", "median"])
    assert "invalid choice: 'median'" in capsys.readouterr().err


def test_config_validation_reaches_the_user() -> None:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, TrainingConfig)
    args = parser.parse_args(["--lr-decay-fraction", "2"])
    with pytest.raises(ValueError, match="lr_decay_fraction=2.0"):
        config_from_args(TrainingConfig, args)


def test_help_lists_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    out = capsys.readouterr().out
    assert "--tokens" in out
    assert "(default: 1000000)" in out
    assert "blocks.6.hook_resid_post" in out
