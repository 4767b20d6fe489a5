"""Forward-pass maths of SparseAutoencoder, checked against hand-written references."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from saehooks.sae import SAEConfig, SparseAutoencoder


def make_sae(architecture: str = "topk", k: int | None = 3, d_in: int = 6, d_sae: int = 10):
    sae = SparseAutoencoder(SAEConfig(d_in=d_in, d_sae=d_sae, architecture=architecture, k=k))
    with torch.no_grad():
        sae.b_enc.normal_()
        sae.b_dec.normal_()
    return sae


def reference_forward(sae: SparseAutoencoder, x: torch.Tensor) -> torch.Tensor:
    """Token-by-token loop with the formula written out, for comparison."""
    rows = []
    for token in x.reshape(-1, sae.cfg.d_in):
        pre_acts = (token - sae.b_dec) @ sae.W_enc + sae.b_enc
        if sae.cfg.architecture == "topk":
            keep = pre_acts.argsort(descending=True)[: sae.cfg.k]
            acts = torch.zeros_like(pre_acts)
            acts[keep] = pre_acts[keep].clamp_min(0)
        else:
            acts = pre_acts.clamp_min(0)
        rows.append(acts @ sae.W_dec + sae.b_dec)
    return torch.stack(rows).reshape(x.shape)


@pytest.mark.parametrize("architecture,k", [("topk", 3), ("relu", None)])
def test_forward_matches_reference(architecture: str, k: int | None) -> None:
    sae = make_sae(architecture, k)
    x = torch.randn(2, 3, 5, 6)
    with torch.no_grad():
        assert_close(sae(x), reference_forward(sae, x))


def test_topk_keeps_k_per_token_on_3d_input() -> None:
    sae = make_sae("topk", k=3)
    with torch.no_grad():
        sae.b_enc.fill_(5.0)  # every pre-activation positive, so exactly k survive the ReLU
        acts = sae.encode(torch.randn(4, 7, 6))
    assert acts.shape == (4, 7, 10)
    assert ((acts != 0).sum(dim=-1) == 3).all()


def test_leading_dims_equal_flattened() -> None:
    sae = make_sae()
    x = torch.randn(2, 3, 6)
    with torch.no_grad():
        assert_close(sae(x), sae(x.reshape(6, 6)).reshape(2, 3, 6))


def test_gate_multiplies_acts_and_broadcasts() -> None:
    sae = make_sae("relu", None)
    x = torch.randn(2, 3, 6)
    gate = torch.tensor([[0.0], [2.0]]).unsqueeze(-1)  # [2, 1, 1] broadcasts to [2, 3, 10]
    with torch.no_grad():
        acts = sae.encode(x)
        gated = sae.encode(x, gate)
    assert_close(gated[0], torch.zeros(3, 10))
    assert_close(gated[1], 2.0 * acts[1])


def test_hook_points_see_flattened_values() -> None:
    sae = make_sae()
    seen: dict[str, torch.Size] = {}
    handles = [
        getattr(sae, name).register_forward_hook(
            lambda module, inputs, output, name=name: seen.__setitem__(name, output.shape)
        )
        for name in ("hook_input", "hook_pre_acts", "hook_acts", "hook_x_hat")
    ]
    try:
        sae(torch.randn(2, 3, 6))
    finally:
        for handle in handles:
            handle.remove()
    assert seen == {
        "hook_input": torch.Size([6, 6]),
        "hook_pre_acts": torch.Size([6, 10]),
        "hook_acts": torch.Size([6, 10]),
        "hook_x_hat": torch.Size([6, 6]),
    }


@pytest.mark.parametrize("architecture,k", [("topk", 3), ("relu", None)])
def test_fold_input_scale_matches_scaled_pipeline(architecture: str, k: int | None) -> None:
    sae = make_sae(architecture, k)
    scale = 0.37
    x = torch.randn(4, 5, 6) * 10
    with torch.no_grad():
        expected = sae(x * scale) / scale  # scale -> encode -> decode -> unscale
        sae.fold_input_scale(scale)
        assert_close(sae(x), expected, atol=1e-5, rtol=1e-5)


def test_wrong_width_raises() -> None:
    with pytest.raises(ValueError, match="d_in=6"):
        make_sae()(torch.randn(3, 5))


def test_config_rejects_bad_k() -> None:
    with pytest.raises(ValueError, match="k=0"):
        SAEConfig(d_in=4, d_sae=8, architecture="topk", k=0)
    with pytest.raises(ValueError, match="set k=None"):
        SAEConfig(d_in=4, d_sae=8, architecture="relu", k=4)


def test_config_from_dict_rejects_unknown_key() -> None:
    with pytest.raises(ValueError, match="unknown SAEConfig keys"):
        SAEConfig.from_dict({"d_in": 4, "d_sae": 8, "colour": "red"})


def test_remove_parallel_decoder_grad() -> None:
    sae = make_sae()
    sae.W_dec.grad = torch.randn_like(sae.W_dec)
    sae.remove_parallel_decoder_grad()
    unit_rows = sae.W_dec / sae.W_dec.norm(dim=1, keepdim=True)
    assert_close((sae.W_dec.grad * unit_rows).sum(dim=1), torch.zeros(10), atol=1e-6, rtol=0)
