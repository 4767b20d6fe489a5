"""Pooled metric accumulators and per-token CE and KL against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from saehooks.evaluation.metrics import (
    FVUAccumulator,
    MeanAccumulator,
    SparsityAccumulator,
    ce_loss_recovered,
    next_token_cross_entropy,
    next_token_kl_divergence,
)

# -- FVU ---------------------------------------------------------------------------------------

# Two batches of one-dimensional tokens. Per batch: A has squared error 2 and variance 2 about
# its own mean 1 (FVU 1); B has squared error 9 and variance 6 about its mean 11 (FVU 1.5).
# Pooled: squared error 11, and the five tokens vary by 49+25+9+9+36 = 128 about their mean 7.
X_A = torch.tensor([[0.0], [2.0]])
X_HAT_A = torch.tensor([[1.0], [1.0]])
X_B = torch.tensor([[10.0], [10.0], [13.0]])
X_HAT_B = torch.tensor([[10.0], [10.0], [10.0]])


def fvu_of(*batches: tuple[torch.Tensor, torch.Tensor]) -> float:
    accumulator = FVUAccumulator()
    for x, x_hat in batches:
        accumulator.update(x, x_hat)
    return accumulator.compute()


def test_fvu_pools_with_global_mean() -> None:
    assert fvu_of((X_A, X_HAT_A)) == 1.0
    assert fvu_of((X_B, X_HAT_B)) == 1.5
    assert fvu_of((X_A, X_HAT_A), (X_B, X_HAT_B)) == 11 / 128


def test_fvu_streamed_equals_concatenated() -> None:
    x = torch.randn(2, 9, 6) * 3 + 1
    x_hat = x + 0.5 * torch.randn(2, 9, 6)

    streamed = fvu_of((x[:, :4], x_hat[:, :4]), (x[:, 4:], x_hat[:, 4:]))
    concatenated = fvu_of((x, x_hat))
    assert streamed == pytest.approx(concatenated, rel=1e-12)

    flat, flat_hat = x.reshape(-1, 6).double(), x_hat.reshape(-1, 6).double()
    reference = (flat - flat_hat).square().sum() / (flat - flat.mean(dim=0)).square().sum()
    assert streamed == pytest.approx(reference.item(), rel=1e-12)


def test_fvu_undefined_without_variance() -> None:
    constant = torch.ones(4, 3)

    assert math.isnan(fvu_of((constant, constant)))
    assert math.isnan(FVUAccumulator().compute())


def test_fvu_rejects_shape_mismatch() -> None:
    with pytest.raises(ValueError, match=r"x has shape \(4, 3\) but x_hat has \(4, 2\)"):
        FVUAccumulator().update(torch.zeros(4, 3), torch.zeros(4, 2))


# -- CE loss recovered -------------------------------------------------------------------------


def test_ce_recovered_uses_pooled_means() -> None:
    # Batch 1 (one token): clean 1, spliced 1.5, zero 2, so its own ratio is 0.5.
    # Batch 2 (three tokens): clean 1, spliced 1.1, zero 11, so its own ratio is 0.99.
    # Pooled means: clean 1, spliced (1.5 + 3.3) / 4 = 1.2, zero (2 + 33) / 4 = 8.75, so the
    # ratio is 7.55 / 7.75 = 151 / 155, while the mean of per-batch ratios would be 0.745.
    clean, spliced, zero = MeanAccumulator(), MeanAccumulator(), MeanAccumulator()
    clean.update(torch.tensor([1.0]))
    spliced.update(torch.tensor([1.5]))
    zero.update(torch.tensor([2.0]))
    clean.update(torch.tensor([1.0, 1.0, 1.0]))
    spliced.update(torch.tensor([1.1, 1.1, 1.1]))
    zero.update(torch.tensor([11.0, 11.0, 11.0]))

    assert clean.compute() == pytest.approx(1.0)
    assert spliced.compute() == pytest.approx(1.2)
    assert zero.compute() == pytest.approx(8.75)
    recovered = ce_loss_recovered(clean.compute(), spliced.compute(), zero.compute())
    assert recovered == pytest.approx(151 / 155, rel=1e-6)
    assert recovered != pytest.approx(0.745, abs=0.1)


def test_ce_recovered_undefined_when_zero_equals_clean() -> None:
    assert math.isnan(ce_loss_recovered(2.0, 2.5, 2.0))


def test_mean_accumulator_empty_is_nan() -> None:
    assert math.isnan(MeanAccumulator().compute())


# -- next-token cross-entropy ------------------------------------------------------------------


def slow_cross_entropy(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    batch, length = tokens.shape
    losses = torch.empty(batch, length - 2)
    for b in range(batch):
        for t in range(1, length - 1):
            log_probs = torch.log_softmax(logits[b, t].double(), dim=-1)
            losses[b, t - 1] = -log_probs[tokens[b, t + 1]]
    return losses


def test_cross_entropy_hand_values() -> None:
    # Two classes, one context of four tokens. Position 0 (BOS) has absurd logits that must not
    # count. Position 1 predicts token 2 = class 1 from logits [0, 0]: loss ln 2. Position 2
    # predicts token 3 = class 0 from logits [0, ln 3]: p(class 0) = 1/4, loss ln 4.
    logits = torch.tensor([[[1e4, -1e4], [0.0, 0.0], [0.0, math.log(3)], [5.0, 5.0]]])
    tokens = torch.tensor([[1, 0, 1, 0]])

    losses = next_token_cross_entropy(logits, tokens)
    assert losses.shape == (1, 2)
    assert_close(losses, torch.tensor([[math.log(2), math.log(4)]]))


@pytest.mark.parametrize("chunk_positions", [1, 3, 256])
def test_cross_entropy_matches_slow_loop(chunk_positions: int) -> None:
    logits = torch.randn(3, 11, 17) * 4
    tokens = torch.randint(0, 17, (3, 11))

    losses = next_token_cross_entropy(logits, tokens, chunk_positions=chunk_positions)
    assert_close(losses, slow_cross_entropy(logits, tokens))


def test_cross_entropy_rejects_short_contexts() -> None:
    with pytest.raises(ValueError, match="context length of at least 3"):
        next_token_cross_entropy(torch.zeros(1, 2, 5), torch.zeros(1, 2, dtype=torch.long))


# -- next-token KL divergence ------------------------------------------------------------------


def pad_to_context(logits: torch.Tensor) -> torch.Tensor:
    """Place ``[vocab]`` logits at position 1 of a 3-token context; positions 0 and 2 are noise."""
    context = torch.randn(1, 3, logits.shape[-1]) * 10
    context[0, 1] = logits
    return context


def test_kl_peaked_logits_stay_finite() -> None:
    clean = pad_to_context(torch.tensor([0.0, -200.0, 5.0]))
    spliced = clean.clone()
    spliced[0, 1] = torch.tensor([0.0, -190.0, 5.0])

    divergence = next_token_kl_divergence(clean, spliced)
    assert divergence.shape == (1, 1)
    assert torch.isfinite(divergence).all()
    assert divergence.abs().item() < 1e-6


def test_kl_two_classes_hand_formula() -> None:
    # p = (1/2, 1/2) from [0, 0], q = (1/4, 3/4) from [0, ln 3]:
    # KL(p ‖ q) = 1/2 ln(1/2 / 1/4) + 1/2 ln(1/2 / 3/4) = 1/2 ln(4/3).
    clean = pad_to_context(torch.tensor([0.0, 0.0]))
    spliced = clean.clone()
    spliced[0, 1] = torch.tensor([0.0, math.log(3)])

    divergence = next_token_kl_divergence(clean, spliced)
    assert_close(divergence, torch.tensor([[0.5 * math.log(4 / 3)]]))


@pytest.mark.parametrize("chunk_positions", [1, 4])
def test_kl_matches_slow_loop(chunk_positions: int) -> None:
    clean = torch.randn(2, 9, 13) * 3
    spliced = clean + torch.randn(2, 9, 13)

    divergence = next_token_kl_divergence(clean, spliced, chunk_positions=chunk_positions)
    expected = torch.empty(2, 7)
    for b in range(2):
        for t in range(1, 8):
            p = torch.softmax(clean[b, t].double(), dim=-1)
            q = torch.softmax(spliced[b, t].double(), dim=-1)
            expected[b, t - 1] = (p * (p / q).log()).sum()
    assert_close(divergence, expected)


def test_kl_identical_logits_is_zero() -> None:
    logits = torch.randn(2, 5, 7)
    assert_close(next_token_kl_divergence(logits, logits.clone()), torch.zeros(2, 3))


def test_kl_rejects_shape_mismatch() -> None:
    with pytest.raises(ValueError, match=r"spliced logits have shape \(1, 4, 5\)"):
        next_token_kl_divergence(torch.zeros(1, 3, 5), torch.zeros(1, 4, 5))


# -- L0 and dead latents -----------------------------------------------------------------------


def test_l0_and_dead_fraction_hand_values() -> None:
    # Five latents over 2 + 1 tokens, in a batch of shape [1, 2, 5] and one of shape [1, 5].
    # Non-zero counts per token: 2, 1, 3, so L0 = 6 / 3 = 2. Latents 1 and 4 never fire, so
    # the dead fraction is 2 / 5. A negative activation counts as non-zero.
    accumulator = SparsityAccumulator(d_sae=5)
    accumulator.update(torch.tensor([[[0.5, 0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0, 0.0]]]))
    accumulator.update(torch.tensor([[3.0, 0.0, -1.0, 0.2, 0.0]]))

    assert accumulator.l0() == 2.0
    assert accumulator.dead_fraction() == pytest.approx(0.4)
    assert accumulator.n_tokens == 3


def test_sparsity_before_update_is_nan() -> None:
    accumulator = SparsityAccumulator(d_sae=3)

    assert math.isnan(accumulator.l0())
    assert math.isnan(accumulator.dead_fraction())


def test_sparsity_rejects_wrong_width() -> None:
    with pytest.raises(ValueError, match="expected d_sae=5"):
        SparsityAccumulator(d_sae=5).update(torch.zeros(2, 4))


def test_cross_entropy_agrees_with_torch() -> None:
    logits = torch.randn(2, 6, 9)
    tokens = torch.randint(0, 9, (2, 6))

    expected = F.cross_entropy(
        logits[:, 1:-1].reshape(-1, 9), tokens[:, 2:].reshape(-1), reduction="none"
    ).reshape(2, 4)
    assert_close(next_token_cross_entropy(logits, tokens, chunk_positions=2), expected)
