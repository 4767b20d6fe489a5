"""Gated SAE: gate and magnitude paths against a hand-written reference."""

from __future__ import annotations

import torch
from torch.testing import assert_close

from saehooks.sae import GatedSAE, SAEConfig, build_sae


def make_gated(d_in: int = 5, d_sae: int = 7) -> GatedSAE:
    sae = build_sae(SAEConfig(d_in=d_in, d_sae=d_sae, architecture="gated", k=None))
    assert isinstance(sae, GatedSAE)
    with torch.no_grad():
        sae.b_gate.normal_()
        sae.r_mag.normal_(0.0, 0.5)
        sae.b_mag.normal_()
        sae.b_dec.normal_()
    return sae


def reference_forward(sae: GatedSAE, x: torch.Tensor) -> torch.Tensor:
    """Token-by-token loop with the paper's formulas written out."""
    rows = []
    for token in x.reshape(-1, sae.cfg.d_in):
        centred = token - sae.b_dec
        pi_gate = centred @ sae.W_enc + sae.b_gate
        pi_mag = centred @ (sae.W_enc * sae.r_mag.exp()) + sae.b_mag
        acts = (pi_gate > 0).float() * pi_mag.clamp_min(0)
        rows.append(acts @ sae.W_dec + sae.b_dec)
    return torch.stack(rows).reshape(x.shape)


def test_parameters_follow_saelens_names() -> None:
    names = set(dict(make_gated().named_parameters()))
    assert names == {"W_enc", "W_dec", "b_dec", "b_gate", "r_mag", "b_mag"}


def test_forward_matches_reference_on_3d_input() -> None:
    sae = make_gated()
    x = torch.randn(2, 3, 5)
    with torch.no_grad():
        assert_close(sae(x), reference_forward(sae, x))
        assert torch.equal(sae(x).reshape(6, 5), sae(x.reshape(6, 5)))


def test_gate_path_decides_and_magnitude_path_scales() -> None:
    sae = make_gated(d_in=2, d_sae=2)
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(2))
        sae.b_dec.zero_()
        sae.b_gate.copy_(torch.tensor([0.0, -5.0]))  # latent 1's gate stays shut
        sae.r_mag.copy_(torch.log(torch.tensor([2.0, 2.0])))  # magnitudes are twice the input
        sae.b_mag.copy_(torch.tensor([0.5, 0.5]))
        acts = sae.encode(torch.tensor([[3.0, 4.0], [-1.0, 4.0]]))
    # Token 0: gate open for latent 0 only, magnitude 2 * 3 + 0.5. Token 1: pi_gate = -1, shut.
    assert_close(acts, torch.tensor([[6.5, 0.0], [0.0, 0.0]]))


def test_hook_points_see_both_paths() -> None:
    sae = make_gated()
    seen: dict[str, torch.Tensor] = {}
    handles = [
        getattr(sae, name).register_forward_hook(
            lambda module, inputs, output, name=name: seen.__setitem__(name, output)
        )
        for name in ("hook_gate_pre_acts", "hook_pre_acts")
    ]
    x = torch.randn(4, 5)
    with torch.no_grad():
        sae(x)
    for handle in handles:
        handle.remove()
    centred = x - sae.b_dec
    assert_close(seen["hook_gate_pre_acts"], centred @ sae.W_enc + sae.b_gate)
    assert_close(seen["hook_pre_acts"], sae.encode_pre_acts(x))


def test_fold_input_scale_keeps_outputs() -> None:
    sae = make_gated()
    x = torch.randn(6, 5)
    with torch.no_grad():
        expected = sae(x * 3.0) / 3.0
        sae.fold_input_scale(3.0)
        assert_close(sae(x), expected)
