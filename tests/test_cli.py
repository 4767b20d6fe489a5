"""Command-line options come from the config dataclasses, with their docs as help."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from saehooks.cli import build_parser, main
from saehooks.config_args import add_config_arguments, config_from_args, field_docs, name_flags
from saehooks.io import save_sae
from saehooks.sae import SAEConfig
from saehooks.training.config import DataConfig, TrainingConfig
from saehooks.training.trainer import new_sae


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


def test_name_flags_rewrites_field_names() -> None:
    flags = {"total_tokens": "--tokens", "k": "--k", "d_sae": "--d-sae", "model": "--model"}

    assert name_flags("total_tokens=0 must be positive", flags) == "--tokens=0 must be positive"
    assert name_flags("use 1 <= k <= d_sae=64", flags) == "use 1 <= k <= --d-sae=64"
    assert name_flags("k=0 is invalid", flags) == "--k=0 is invalid"
    # Names without an underscore are ordinary words in prose and stay unless they read name=.
    assert name_flags("the model did not load", flags) == "the model did not load"
    assert name_flags("lower max_total_tokens", flags) == "lower max_total_tokens"


def no_model_args(tmp_path: Path, *options: str) -> list[str]:
    """``train`` options whose --model folder does not exist, so loading it would fail."""
    return [
        "train",
        "--model",
        str(tmp_path / "no-model"),
        "--out",
        str(tmp_path / "run"),
        *options,
    ]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--tokens", "0"], "--tokens=0 must be positive"),
        (["--k", "0"], "--k=0 is invalid for --architecture='topk'"),
        (["--d-sae", "64", "--k", "65"], "use 1 <= k <= --d-sae=64"),
        (["--architecture", "relu", "--k", "4"], "drop --k"),
        (["--architecture", "moe", "--n-experts", "7"], "--n-experts=7 must be at least 2"),
        (["--architecture", "matryoshka"], "--architecture='matryoshka' needs --matryoshka-widths"),
        (["--remedy", "auxk", "--d-sae", "64", "--k", "4"], "--k-aux=512 exceeds --d-sae=64"),
        (["--architecture", "gated", "--remedy", "reinit"], "--remedy='reinit' cannot edit"),
        (["--eval-tokens", "1"], "--eval-tokens=1 is invalid"),
        (["--eval-tokens", "-5"], "--eval-tokens=-5 is invalid"),
        (["--corpus", "no-such-corpus.txt"], "invalid corpus spec 'no-such-corpus.txt'"),
        (["--buffer-tokens", "1"], "--buffer-tokens=1 must be at least 2"),
    ],
)
def test_train_errors_name_flags_before_loading(
    options: list[str],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(no_model_args(tmp_path, *options)) == 2

    error = capsys.readouterr().err
    assert message in error
    assert "no-model" not in error  # the model was never loaded
    assert not (tmp_path / "run").exists()


def test_existing_run_is_rejected_before_loading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "run" / "sae").mkdir(parents=True)

    assert main(no_model_args(tmp_path)) == 2
    error = capsys.readouterr().err
    assert "already holds a training run" in error
    assert "no-model" not in error


def test_missing_model_still_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("w1 w2 w3\n", encoding="utf-8")
    assert main(no_model_args(tmp_path, "--corpus", str(corpus))) == 2
    assert "no-model" in capsys.readouterr().err


def test_d_sae_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--d-sae", "0"])
    assert "argument --d-sae: must be a positive integer, got 0" in capsys.readouterr().err


def test_eval_tokens_error_names_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["eval", str(tmp_path), "--eval-tokens", "1"]) == 2
    assert "error: --eval-tokens=1 is too few" in capsys.readouterr().err


def test_hooks_lists_names_per_backend(
    tiny_model_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["hooks", str(tiny_model_dir), "--filter", "blocks.1."]) == 0
    transformer_lens = capsys.readouterr().out.splitlines()
    assert (
        main(["hooks", str(tiny_model_dir), "--filter", "blocks.1.", "--backend", "nnsight"]) == 0
    )
    nnsight = capsys.readouterr().out.splitlines()

    assert "blocks.1.hook_resid_post" in transformer_lens
    assert "blocks.1.mlp.hook_post" in transformer_lens  # [B, T, d_mlp] is trainable
    assert all(name.startswith("blocks.1.") for name in transformer_lens)
    assert sorted(nnsight) == [
        "blocks.1.hook_attn_out",
        "blocks.1.hook_mlp_out",
        "blocks.1.hook_resid_post",
        "blocks.1.hook_resid_pre",
    ]


def test_hooks_filter_without_match(
    tiny_model_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["hooks", str(tiny_model_dir), "--filter", "hook_nothing"]) == 2
    error = capsys.readouterr().err
    assert "no hook name of" in error
    assert "contains 'hook_nothing'" in error


def test_eval_checks_corpus_before_loading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    sae_cfg = SAEConfig(d_in=32, d_sae=8, k=2, hook_name="blocks.1.hook_resid_post")
    extra = {"host_model": str(tmp_path / "no-model"), "context_size": 16}
    save_sae(new_sae(sae_cfg, seed=0), tmp_path / "run" / "sae", extra=extra)

    status = main(["eval", str(tmp_path / "run"), "--corpus", "no-such-corpus.txt"])
    assert status == 2
    error = capsys.readouterr().err
    assert "invalid corpus spec 'no-such-corpus.txt'" in error
    assert "no-model" not in error


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--sweep-k", "4", "8", "4"], "--sweep-k lists 4 more than once"),
        (["--sweep-d-sae", "64", "64"], "--sweep-d-sae lists 64 more than once"),
        (
            ["--hook-names", "blocks.1.hook_resid_post", "blocks.1.hook_resid_post"],
            "--hook-names lists blocks.1.hook_resid_post more than once",
        ),
    ],
)
def test_repeated_sweep_value_rejected_before_loading(
    options: list[str],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(no_model_args(tmp_path, *options)) == 2

    error = capsys.readouterr().err
    assert message in error
    assert "no-model" not in error  # the model was never loaded


def test_pretrained_without_subcommand_names_choices(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["pretrained"])
    error = capsys.readouterr().err
    assert "the following arguments are required: {list}" in error
    assert "pretrained_command" not in error


def test_hooks_hides_untrainable_names_unless_all(
    tiny_model_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["hooks", str(tiny_model_dir), "--filter", "blocks.1."]) == 0
    output = capsys.readouterr()
    trainable = output.out.splitlines()
    assert main(["hooks", str(tiny_model_dir), "--filter", "blocks.1.", "--all"]) == 0
    every_name = capsys.readouterr().out.splitlines()

    # [B, heads, T, T], [B, T, heads, d_head] and [B, T, 1] activations cannot be trained on,
    # and rotary cos and sin depend only on the position.
    untrainable = [
        "blocks.1.attn.hook_pattern",
        "blocks.1.attn.hook_attn_scores",
        "blocks.1.attn.hook_z",
        "blocks.1.attn.hook_q",
        "blocks.1.ln1.hook_scale",
        "blocks.1.attn.hook_cos",
    ]
    for name in untrainable:
        assert name not in trainable, name
        assert name in every_name, name
    assert "blocks.1.hook_resid_post" in trainable
    assert set(trainable) < set(every_name)
    assert "--all lists them" in output.err
