"""--architecture chooses plain or composite SAEs, and each composite gets its own options."""

from __future__ import annotations

import pytest

from saehooks.architecture_args import sae_config_from_args
from saehooks.cli import DEFAULT_TOPK_K, build_parser
from saehooks.sae import DeepConfig, HierarchicalConfig, MixtureConfig, SAEConfig


def config_for(*options: str) -> object:
    args = build_parser().parse_args(["train", *options])
    return sae_config_from_args(args, d_in=32, default_k=DEFAULT_TOPK_K)


def test_moe_options_build_a_mixture_config() -> None:
    cfg = config_for(
        "--architecture", "moe", "--d-sae", "96", "--n-experts", "4",
        "--experts-per-token", "1", "--balance-coefficient", "0.5", "--k", "5",
        "--dtype", "bfloat16",
    )
    assert cfg == MixtureConfig(
        d_in=32, d_sae=96, n_experts=4, experts_per_token=1, k=5, balance_coefficient=0.5,
        dtype="bfloat16", hook_name="blocks.6.hook_resid_post",
    )


def test_hierarchical_and_deep_defaults() -> None:
    hierarchical = config_for("--architecture", "hierarchical")
    assert isinstance(hierarchical, HierarchicalConfig)
    assert hierarchical.d_sae == 4608
    assert hierarchical.d_parent == 512
    assert hierarchical.k == 8
    assert hierarchical.child_k == 3

    deep = config_for("--architecture", "deep", "--d-hidden", "128")
    assert isinstance(deep, DeepConfig)
    assert deep.k == 32
    assert deep.d_hidden == 128


def test_plain_architectures_still_build_sae_config() -> None:
    topk = config_for("--architecture", "topk")
    assert isinstance(topk, SAEConfig)
    assert topk.k == DEFAULT_TOPK_K
    relu = config_for("--architecture", "relu")
    assert isinstance(relu, SAEConfig)
    assert relu.k is None


def test_option_of_another_composite_is_rejected() -> None:
    with pytest.raises(ValueError, match="--child-size applies only to --architecture hier"):
        config_for("--architecture", "moe", "--child-size", "4")
    with pytest.raises(ValueError, match="--n-experts applies only to --architecture moe"):
        config_for("--architecture", "topk", "--n-experts", "4")


def test_invalid_composite_setting_names_the_field() -> None:
    with pytest.raises(ValueError, match="n_experts=7 must be at least 2 and divide d_sae=4608"):
        config_for("--architecture", "moe", "--n-experts", "7")


def test_help_lists_composites(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    out = capsys.readouterr().out
    for text in ("moe", "hierarchical", "deep", "--n-experts", "--child-k", "--d-hidden"):
        assert text in out
