"""Ghost grads and aux-k: hand values, and gradients that reach only the dead latents."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from saehooks.resampling.auxiliary import (
    AuxKLoss,
    GhostGradsLoss,
    auxk_terms,
    ghost_grads_terms,
)
from saehooks.sae import SAEConfig, SparseAutoencoder
from saehooks.trackers.base import attached


def three_latent_sae() -> SparseAutoencoder:
    """d_in 2, latents 0 and 1 alive, latent 2 dead at pre-activation -1 on x = [2, 1]."""
    sae = SparseAutoencoder(SAEConfig(d_in=2, d_sae=3, architecture="relu", k=None))
    with torch.no_grad():
        sae.W_enc.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
        sae.b_enc.copy_(torch.tensor([0.0, 0.0, -1.0]))
        sae.W_dec.copy_(torch.tensor([[0.5, 0.0], [0.0, 0.5], [0.6, 0.8]]))
        sae.b_dec.zero_()
    return sae


X = torch.tensor([[2.0, 1.0]])  # pre-acts [2, 1, -1], x_hat = [1, 0.5], residual [1, 0.5]


def test_ghost_activation_is_exp_of_pre_activation() -> None:
    sae = three_latent_sae()
    pre_acts = (X @ sae.W_enc + sae.b_enc)[:, [2]]
    x_hat = sae(X)
    terms = ghost_grads_terms(pre_acts, sae.W_dec[[2]], X, x_hat)
    assert_close(terms.acts, torch.tensor([[math.exp(-1.0)]]))
    # rescaled to half the residual's norm, along the dead latent's decoder row
    half = math.sqrt(1.25) / 2
    assert_close(terms.reconstruction, torch.tensor([[0.6 * half, 0.8 * half]]))
    # rescaled to the value of the main MSE, 1^2 + 0.5^2
    assert_close(terms.loss, torch.tensor(1.25))


def test_ghost_grads_reach_only_the_dead_latent() -> None:
    sae = three_latent_sae()
    penalty = GhostGradsLoss(coefficient=1.0)
    penalty.dead_latents = torch.tensor([2])
    with attached(sae, ghost=penalty):
        sae(X)
        penalty.loss.backward()

    for name in ("W_enc", "b_enc", "W_dec"):
        grad = getattr(sae, name).grad
        live = grad[:, :2] if name == "W_enc" else grad[:2]
        assert torch.count_nonzero(live) == 0, name
    assert sae.b_dec.grad is None or torch.count_nonzero(sae.b_dec.grad) == 0

    # d loss / d pre = c * 2 (g - r) . g, with g the rescaled ghost output and c = mse / ghost mse
    half = math.sqrt(1.25) / 2
    g = (0.6 * half, 0.8 * half)
    r = (1.0, 0.5)
    ghost_mse = (g[0] - r[0]) ** 2 + (g[1] - r[1]) ** 2
    d_pre = 1.25 / ghost_mse * 2 * ((g[0] - r[0]) * g[0] + (g[1] - r[1]) * g[1])
    assert_close(sae.b_enc.grad[2], torch.tensor(d_pre))
    assert_close(sae.W_enc.grad[:, 2], X[0] * d_pre)
    assert torch.count_nonzero(sae.W_dec.grad[2]) == 2


def test_ghost_grads_without_dead_latents_is_zero() -> None:
    sae = three_latent_sae()
    penalty = GhostGradsLoss(coefficient=1.0)
    with attached(sae, ghost=penalty):
        x_hat = sae(X)
        assert penalty.loss is not None
        assert penalty.loss.item() == 0.0
        total = (x_hat - X).pow(2).sum() + penalty.loss
        total.backward()
    assert all(torch.isfinite(p.grad).all() for p in sae.parameters())


def test_ghost_grads_zero_residual_gives_zero_not_nan() -> None:
    sae = three_latent_sae()
    x = torch.tensor([[2.0, 1.0]])
    pre_acts = torch.tensor([[-1.0]], requires_grad=True)
    terms = ghost_grads_terms(pre_acts, sae.W_dec[[2]].detach(), x, x.clone())
    terms.loss.backward()
    assert terms.loss.item() == 0.0
    assert torch.isfinite(pre_acts.grad).all()


def test_ghost_grads_large_pre_acts_match_float64() -> None:
    W_dec = torch.tensor([[0.6, 0.8], [1.0, 0.0]])
    x = torch.tensor([[2.0, 1.0], [0.5, -1.0], [1.0, 1.0]])
    x_hat = torch.tensor([[1.0, 0.5], [0.0, 0.0], [0.0, 2.0]])
    values = torch.tensor([[200.0, 199.0], [-300.0, -299.0], [-3.0, 1.0]])

    pre32 = values.clone().requires_grad_()
    loss32 = ghost_grads_terms(pre32, W_dec, x, x_hat).loss
    loss32.backward()
    pre64 = values.double().requires_grad_()
    loss64 = ghost_grads_terms(pre64, W_dec.double(), x.double(), x_hat.double()).loss
    loss64.backward()
    assert torch.isfinite(pre32.grad).all()
    assert_close(loss32.double(), loss64)
    assert_close(pre32.grad.double(), pre64.grad, rtol=1e-4, atol=1e-6)
    # shifting a token's pre-activations by a constant changes neither loss nor gradients
    moderate = values - values.max(dim=-1, keepdim=True).values + 1.0
    pre_moderate = moderate.double().requires_grad_()
    loss_moderate = ghost_grads_terms(pre_moderate, W_dec.double(), x.double(), x_hat.double()).loss
    loss_moderate.backward()
    assert_close(loss_moderate, loss64)
    assert_close(pre_moderate.grad, pre64.grad)


def aux_sae() -> SparseAutoencoder:
    """d_in 2, d_sae 4, b_dec non-zero; latents 1, 2, 3 are called dead."""
    sae = SparseAutoencoder(SAEConfig(d_in=2, d_sae=4, architecture="relu", k=None))
    with torch.no_grad():
        sae.W_enc.copy_(torch.tensor([[1.0, 1.0, 0.0, -1.0], [0.0, 0.0, 1.0, 0.0]]))
        sae.b_enc.copy_(torch.tensor([0.0, -1.0, 0.5, -0.5]))
        sae.W_dec.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0]]))
        sae.b_dec.copy_(torch.tensor([0.25, -0.5]))
    return sae


def test_auxk_hand_values_exclude_b_dec() -> None:
    sae = aux_sae()
    x = torch.tensor([[3.25, 1.5]])  # centred [3, 2]; pre-acts [3, 2, 2.5, -3.5]
    x_hat = sae(x).detach()  # acts [3, 2, 2.5, 0]: [3 + 2.5 + 0.25, 2 + 2.5 - 0.5] = [5.75, 4]
    assert_close(x_hat, torch.tensor([[5.75, 4.0]]))
    residual = x - x_hat  # [-2.5, -2.5]
    pre_acts = torch.tensor([[2.0, 2.5, -3.5]])  # dead latents 1, 2, 3
    terms = auxk_terms(pre_acts, sae.W_dec[[1, 2, 3]], x, x_hat, k_aux=2)
    assert_close(terms.acts, torch.tensor([[2.0, 2.5, 0.0]]))
    # decoded without b_dec: 2 [0, 1] + 2.5 [1, 1] = [2.5, 4.5]
    assert_close(terms.reconstruction, torch.tensor([[2.5, 4.5]]))
    expected = (2.5 - residual[0, 0]) ** 2 + (4.5 - residual[0, 1]) ** 2  # 25 + 49
    assert_close(terms.loss, expected)


def test_auxk_top_k_relu_drops_negative_picks() -> None:
    pre_acts = torch.tensor([[-2.0, -1.0, -3.0]])
    terms = auxk_terms(pre_acts, torch.eye(3), torch.zeros(1, 3), torch.zeros(1, 3), k_aux=2)
    assert torch.count_nonzero(terms.acts) == 0


def test_auxk_gradient_skips_b_dec_and_live_latents() -> None:
    sae = aux_sae()
    penalty = AuxKLoss(coefficient=1.0 / 32, k_aux=2)
    penalty.dead_latents = torch.tensor([1, 2, 3])
    x = torch.tensor([[3.25, 1.5], [1.0, -2.0], [0.0, 4.0]])
    with attached(sae, aux=penalty):
        sae(x)
        penalty.loss.backward()
    assert sae.b_dec.grad is None or torch.count_nonzero(sae.b_dec.grad) == 0
    assert torch.count_nonzero(sae.W_enc.grad[:, 0]) == 0
    assert sae.b_enc.grad[0].item() == 0.0
    assert torch.count_nonzero(sae.W_dec.grad[0]) == 0
    assert torch.count_nonzero(sae.W_dec.grad[1:]) > 0


def test_auxk_tracker_matches_terms() -> None:
    sae = aux_sae()
    penalty = AuxKLoss(coefficient=1.0, k_aux=2)
    penalty.dead_latents = torch.tensor([1, 2, 3])
    x = torch.tensor([[3.25, 1.5], [1.0, -2.0]])
    with attached(sae, aux=penalty), torch.no_grad():
        x_hat = sae(x)
        pre_acts = ((x - sae.b_dec) @ sae.W_enc + sae.b_enc)[:, [1, 2, 3]]
        expected = auxk_terms(pre_acts, sae.W_dec[[1, 2, 3]], x, x_hat, k_aux=2).loss
        assert_close(penalty.loss, expected)


@pytest.mark.parametrize("make", [lambda: GhostGradsLoss(1.0), lambda: AuxKLoss(1.0, 2)])
def test_dead_penalty_detach_removes_all_hooks(make) -> None:
    sae = aux_sae()
    with attached(sae, aux=make()):
        assert len(sae.hook_input._forward_hooks) == 1
        assert len(sae.hook_x_hat._forward_hooks) == 1
    assert len(sae.hook_input._forward_hooks) == 0
    assert len(sae.hook_x_hat._forward_hooks) == 0
