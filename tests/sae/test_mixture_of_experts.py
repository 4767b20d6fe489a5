"""The mixture of experts routes tokens by hand-set router weights and gates expert outputs."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from saehooks.sae.mixture import MixtureConfig, MixtureOfExperts


def hand_set_mixture() -> MixtureOfExperts:
    """Three one-latent experts on d_in=2, two experts per token.

    The router gives x=(1, 0) the probabilities (0.6, 0.3, 0.1) and x=(0, 1) the probabilities
    (0.1, 0.3, 0.6), so the selected weights renormalise to 2/3 and 1/3.
    """
    cfg = MixtureConfig(d_in=2, d_sae=3, n_experts=3, experts_per_token=2, k=1)
    sae = MixtureOfExperts(cfg)
    with torch.no_grad():
        sae.W_router.copy_(torch.tensor([[math.log(6), math.log(3), 0.0],
                                         [0.0, math.log(3), math.log(6)]]))
        sae.b_router.zero_()
        sae.b_dec.zero_()
        encoders = ([[2.0], [4.0]], [[1.0], [1.0]], [[5.0], [3.0]])
        decoders = ([[1.0, 0.0]], [[0.0, 1.0]], [[1.0, 1.0]])
        for expert, w_enc, w_dec in zip(sae.experts, encoders, decoders, strict=True):
            expert.W_enc.copy_(torch.tensor(w_enc))
            expert.b_enc.zero_()
            expert.W_dec.copy_(torch.tensor(w_dec))
    return sae


def test_hand_set_routing_and_gates() -> None:
    sae = hand_set_mixture()
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    seen: list[torch.Tensor] = []
    handle = sae.hook_router_probs.register_forward_hook(
        lambda module, inputs, output: seen.append(output.detach())
    )
    try:
        with torch.no_grad():
            acts = sae.encode(x)
            x_hat = sae(x)
    finally:
        handle.remove()

    assert_close(seen[0], torch.tensor([[0.6, 0.3, 0.1], [0.1, 0.3, 0.6]]))
    # Token 0 goes to experts 0 and 1 (weights 2/3, 1/3); expert 2 would give 5 but is not chosen.
    # Token 1 goes to experts 2 and 1 (weights 2/3, 1/3); expert 0 would give 4 but is not chosen.
    assert_close(acts, torch.tensor([[2 * 2 / 3, 1 / 3, 0.0], [0.0, 1 / 3, 3 * 2 / 3]]))
    assert_close(x_hat, torch.tensor([[4 / 3, 1 / 3], [2.0, 1 / 3 + 2.0]]))


def test_b_dec_centres_router_and_experts() -> None:
    sae = hand_set_mixture()
    offset = torch.tensor([0.5, -2.0])
    with torch.no_grad():
        sae.b_dec.copy_(offset)
        x_hat = sae(torch.tensor([[1.0, 0.0], [0.0, 1.0]]) + offset)
    assert_close(x_hat, torch.tensor([[4 / 3, 1 / 3], [2.0, 7 / 3]]) + offset)


def test_router_learns_from_reconstruction() -> None:
    sae = MixtureOfExperts(MixtureConfig(d_in=8, d_sae=32, n_experts=4, k=2))
    x = torch.randn(64, 8)
    (sae(x) - x).pow(2).sum().backward()
    assert sae.W_router.grad is not None
    assert sae.W_router.grad.abs().sum() > 0
    assert all(expert.b_dec.grad is None for expert in sae.experts)


def test_three_d_input_equals_flattened() -> None:
    sae = MixtureOfExperts(MixtureConfig(d_in=8, d_sae=32, n_experts=4, k=2))
    x = torch.randn(2, 3, 8)
    with torch.no_grad():
        assert_close(sae(x), sae(x.reshape(6, 8)).reshape(2, 3, 8))
        assert sae.encode(x).shape == (2, 3, 32)


def test_hook_acts_sees_every_expert_side_by_side() -> None:
    sae = MixtureOfExperts(MixtureConfig(d_in=8, d_sae=32, n_experts=4, experts_per_token=1, k=2))
    shapes: list[torch.Size] = []
    handle = sae.hook_acts.register_forward_hook(
        lambda module, inputs, output: shapes.append(output.shape)
    )
    try:
        with torch.no_grad():
            acts = sae.encode(torch.randn(2, 5, 8))
    finally:
        handle.remove()
    assert shapes == [torch.Size([10, 32])]
    # One expert per token with k=2: exactly 2 non-zeros, all inside one expert's block.
    per_expert = (acts.reshape(10, 4, 8) != 0).sum(dim=-1)  # [tokens, experts]
    assert (per_expert.sum(dim=-1) == 2).all()
    assert ((per_expert > 0).sum(dim=-1) == 1).all()


def test_fold_input_scale_is_exact() -> None:
    sae = MixtureOfExperts(MixtureConfig(d_in=8, d_sae=32, n_experts=4, k=2, dtype="float64"))
    with torch.no_grad():
        sae.b_dec.copy_(torch.randn(8, dtype=torch.float64))
        x = torch.randn(16, 8, dtype=torch.float64)
        expected = sae(x * 3.0) / 3.0
        sae.fold_input_scale(3.0)
        assert_close(sae(x), expected)


@pytest.mark.parametrize(
    "values,message",
    [
        ({"d_sae": 30, "n_experts": 4}, "n_experts=4 must be at least 2 and divide d_sae=30"),
        ({"experts_per_token": 5}, "experts_per_token=5 is invalid"),
        ({"k": 9}, "k=9 is invalid; use 1 <= k <= d_sae / n_experts = 8"),
        ({"balance_coefficient": -1.0}, "balance_coefficient=-1.0"),
        ({"dtype": "int8"}, "dtype='int8'"),
    ],
)
def test_config_errors_name_the_field(values: dict, message: str) -> None:
    settings = {"d_in": 8, "d_sae": 32, "n_experts": 4, "k": 2, **values}
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        MixtureConfig(**settings)


def test_config_round_trips_through_dict() -> None:
    cfg = MixtureConfig(d_in=8, d_sae=32, n_experts=4, k=2, hook_name="blocks.1.hook_resid_post")
    values = cfg.to_dict()
    assert values["architecture"] == "moe"
    assert MixtureConfig.from_dict(values) == cfg
    with pytest.raises(ValueError, match="unknown MixtureConfig keys \\['extra'\\]"):
        MixtureConfig.from_dict({**values, "extra": 1})
    with pytest.raises(ValueError, match="architecture='deep' does not match"):
        MixtureConfig.from_dict({**values, "architecture": "deep"})
