"""Penalty trackers of the JumpReLU, gated and Matryoshka SAEs, pinned to hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from saehooks.sae import SAEConfig, build_sae
from saehooks.trackers import (
    GatedAuxiliaryReconstruction,
    GateL1,
    MatryoshkaReconstruction,
    TanhL0Penalty,
    attached,
)


def test_tanh_l0_hand_value() -> None:
    sae = build_sae(
        SAEConfig(d_in=2, d_sae=3, architecture="jumprelu", k=None, jumprelu_threshold=1.0)
    )
    with torch.no_grad():
        sae.W_enc.zero_()
        sae.b_enc.copy_(torch.tensor([2.0, 0.5, 1.5]))  # latent 1 is below its threshold
        sae.W_dec.copy_(torch.tensor([[0.5, 0.0], [1.0, 0.0], [0.0, 0.25]]))
    penalty = TanhL0Penalty(scale=4.0)
    with attached(sae, l0_penalty=penalty):
        sae(torch.randn(3, 2))
    assert penalty.loss is not None
    # tanh(4 * 2 * 0.5) + tanh(0) + tanh(4 * 1.5 * 0.25), the same for every token
    assert penalty.loss.item() == pytest.approx(math.tanh(4.0) + math.tanh(1.5), rel=1e-6)
    penalty.loss.backward()
    assert sae.b_enc.grad is not None and sae.b_enc.grad[0] > 0  # tanh reaches the encoder


def make_gated() -> torch.nn.Module:
    sae = build_sae(SAEConfig(d_in=2, d_sae=2, architecture="gated", k=None))
    with torch.no_grad():
        sae.W_enc.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        sae.b_gate.copy_(torch.tensor([0.0, -1.0]))
        sae.W_dec.copy_(torch.tensor([[2.0, 0.0], [0.0, 1.0]]))
        sae.b_dec.copy_(torch.tensor([0.5, 0.5]))
    return sae


def test_gate_l1_hand_value() -> None:
    sae = make_gated()
    penalty = GateL1()
    with attached(sae, l1=penalty):
        sae(torch.tensor([[3.5, 0.5], [1.5, 4.5]]))
    # pi_gate = (x - b_dec) @ W_enc + b_gate: [3, -1] and [1, 3]; relu: [3, 0] and [1, 3].
    # Weighted by decoder norms [2, 1]: 6 and 2 + 3, mean 5.5.
    assert penalty.loss is not None
    assert penalty.loss.item() == pytest.approx(5.5)


def test_gated_aux_hand_value_and_frozen_decoder() -> None:
    sae = make_gated()
    aux = GatedAuxiliaryReconstruction()
    x = torch.tensor([[3.5, 0.5], [1.5, 4.5]])
    with attached(sae, gate_aux=aux):
        sae(x)
    # relu(pi_gate) = [3, 0] and [1, 3]; reconstructions [6.5, 0.5] and [2.5, 3.5];
    # squared errors 9 + 0 and 1 + 1, mean 5.5.
    assert aux.loss is not None
    assert aux.loss.item() == pytest.approx(5.5)
    aux.loss.backward()
    for name in ("W_dec", "b_dec", "r_mag", "b_mag"):
        grad = getattr(sae, name).grad
        assert grad is None or torch.count_nonzero(grad) == 0, name
    assert sae.W_enc.grad is not None and torch.count_nonzero(sae.W_enc.grad) > 0
    assert sae.b_gate.grad is not None and torch.count_nonzero(sae.b_gate.grad) > 0


def make_matryoshka() -> torch.nn.Module:
    cfg = SAEConfig(d_in=2, d_sae=3, architecture="matryoshka", k=3, matryoshka_widths=(1, 2, 3))
    sae = build_sae(cfg)
    with torch.no_grad():
        sae.W_enc.copy_(torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]))
        sae.b_enc.zero_()
        sae.W_dec.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        sae.b_dec.zero_()
    return sae


def test_matryoshka_hand_value() -> None:
    sae = make_matryoshka()
    penalty = MatryoshkaReconstruction()
    with attached(sae, matryoshka=penalty):
        x_hat = sae(torch.tensor([[1.0, 2.0]]))
    # acts = [1, 2, 3]. Prefix 1: x_hat [1, 0], error 0 + 4. Prefix 2: x_hat [1, 2], error 0.
    # The full dictionary (x_hat [4, 5]) is the trainer's own MSE and is left out.
    assert penalty.loss is not None
    assert penalty.loss.item() == pytest.approx(4.0)
    assert_close(x_hat, torch.tensor([[4.0, 5.0]]))


def reference_matryoshka(sae: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    acts = sae.encode(x)
    total = torch.zeros(())
    for width in sae.cfg.matryoshka_widths[:-1]:
        x_hat = acts[..., :width] @ sae.W_dec[:width] + sae.b_dec
        total = total + (x_hat - x).pow(2).sum(dim=-1).mean()
    return total


def test_matryoshka_on_3d_input_matches_reference() -> None:
    cfg = SAEConfig(
        d_in=4, d_sae=12, architecture="matryoshka", k=3, matryoshka_widths=(2, 5, 9, 12)
    )
    sae = build_sae(cfg)
    with torch.no_grad():
        sae.b_enc.normal_()
        sae.b_dec.normal_()
    x = torch.randn(2, 5, 4)
    penalty = MatryoshkaReconstruction()
    with attached(sae, matryoshka=penalty), torch.no_grad():
        sae(x)
        assert penalty.loss is not None
        from_3d = penalty.loss.clone()
        sae(x.reshape(10, 4))
        assert_close(penalty.loss, from_3d)
        assert_close(from_3d, reference_matryoshka(sae, x))


def test_matryoshka_detach_removes_input_hook() -> None:
    sae = make_matryoshka()
    with attached(sae, matryoshka=MatryoshkaReconstruction()):
        assert len(sae.hook_input._forward_hooks) == 1
    assert len(sae.hook_input._forward_hooks) == 0
    assert len(sae.hook_acts._forward_hooks) == 0
    assert len(sae.trackers) == 0


def test_matryoshka_needs_widths() -> None:
    sae = build_sae(SAEConfig(d_in=2, d_sae=3, architecture="batchtopk", k=1))
    with pytest.raises(ValueError, match="matryoshka_widths"):
        MatryoshkaReconstruction().attach(sae, "matryoshka")
