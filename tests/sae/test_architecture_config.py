"""SAEConfig checks for the new architectures, and their command-line options."""

from __future__ import annotations

import json

import pytest

from saehooks.cli import build_parser
from saehooks.config_args import config_from_args
from saehooks.sae import SAEConfig
from saehooks.training.config import TrainingConfig


@pytest.mark.parametrize("architecture", ["batchtopk", "matryoshka"])
def test_k_required_for_batch_architectures(architecture: str) -> None:
    widths = (4, 8) if architecture == "matryoshka" else None
    with pytest.raises(ValueError, match=f"k=None is invalid for architecture='{architecture}'"):
        SAEConfig(d_in=4, d_sae=8, architecture=architecture, k=None, matryoshka_widths=widths)


@pytest.mark.parametrize("architecture", ["jumprelu", "gated"])
def test_k_rejected_for_threshold_architectures(architecture: str) -> None:
    with pytest.raises(ValueError, match="k=3 only applies"):
        SAEConfig(d_in=4, d_sae=8, architecture=architecture, k=3)


@pytest.mark.parametrize(
    "widths", [(), (4, 4, 8), (8, 4), (0, 8), (4, 6), (4, 9)], ids=lambda widths: str(widths)
)
def test_invalid_matryoshka_widths(widths: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="matryoshka_widths="):
        SAEConfig(d_in=4, d_sae=8, architecture="matryoshka", k=2, matryoshka_widths=widths)


def test_matryoshka_needs_widths() -> None:
    with pytest.raises(ValueError, match="needs matryoshka_widths") as raised:
        SAEConfig(d_in=4, d_sae=144, architecture="matryoshka", k=2)
    # The example is written as the command-line option takes it.
    assert "for example 9,36,144 " in str(raised.value)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("k", "eight", "k='eight' is invalid: it must be an integer or None, not str"),
        ("d_sae", 64.0, "d_sae=64.0 is invalid: it must be an integer, not float"),
        ("d_in", True, "d_in=True is invalid: it must be an integer, not bool"),
        ("dtype", 16, "dtype=16 is invalid: it must be a string, not int"),
        ("apply_b_dec_to_input", "yes", "apply_b_dec_to_input='yes' is invalid: it must be a"),
        ("matryoshka_widths", "4,8", "matryoshka_widths='4,8' is invalid: it must be a list"),
    ],
)
def test_field_of_wrong_type_is_named(field: str, value: object, message: str) -> None:
    settings = {"d_in": 4, "d_sae": 8, "architecture": "topk", "k": 2, field: value}
    with pytest.raises(TypeError) as raised:
        SAEConfig(**settings)
    assert str(raised.value).startswith(message)


def test_widths_only_for_matryoshka() -> None:
    with pytest.raises(ValueError, match="only applies to architecture='matryoshka'"):
        SAEConfig(d_in=4, d_sae=8, architecture="batchtopk", k=2, matryoshka_widths=(4, 8))


def test_json_round_trip_keeps_widths() -> None:
    cfg = SAEConfig(d_in=4, d_sae=8, architecture="matryoshka", k=2, matryoshka_widths=(2, 4, 8))
    restored = SAEConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert restored == cfg
    assert restored.matryoshka_widths == (2, 4, 8)


def test_jumprelu_settings_validated() -> None:
    with pytest.raises(ValueError, match="jumprelu_bandwidth=0"):
        SAEConfig(d_in=4, d_sae=8, architecture="jumprelu", k=None, jumprelu_bandwidth=0)
    with pytest.raises(ValueError, match="jumprelu_threshold=-1"):
        SAEConfig(d_in=4, d_sae=8, architecture="jumprelu", k=None, jumprelu_threshold=-1)
    with pytest.raises(ValueError, match="l0_penalty='smooth'"):
        TrainingConfig(l0_penalty="smooth")  # type: ignore[arg-type]  # invalid on purpose


def test_cli_builds_architecture_configs() -> None:
    args = build_parser().parse_args(
        [
            "train",
            "--architecture",
            "matryoshka",
            "--matryoshka-widths",
            "64,256,1024",
            "--d-sae",
            "1024",
            "--l0-penalty",
            "tanh",
            "--l0-coefficient",
            "0.5",
            "--jumprelu-bandwidth",
            "0.2",
        ]
    )
    sae_cfg = config_from_args(SAEConfig, args, d_in=16, d_sae=args.d_sae, k=8)
    train_cfg = config_from_args(TrainingConfig, args)
    assert sae_cfg.matryoshka_widths == (64, 256, 1024)
    assert sae_cfg.jumprelu_bandwidth == 0.2
    assert train_cfg.l0_penalty == "tanh"
    assert train_cfg.l0_coefficient == 0.5


def test_cli_rejects_malformed_widths(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--matryoshka-widths", "64,many"])
    assert "comma-separated list of integers" in capsys.readouterr().err
