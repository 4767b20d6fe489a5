"""The Switch Transformer load-balancing loss on hand-set router probabilities."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from saehooks.sae.mixture import MixtureConfig, MixtureOfExperts
from saehooks.trackers import attached
from saehooks.trackers.balance import LoadBalance

PROBS = torch.tensor(
    [
        [0.6, 0.3, 0.1],
        [0.1, 0.3, 0.6],
        [0.5, 0.4, 0.1],
        [0.25, 0.15, 0.6],
    ]
)
# Mean probability per expert: (1.45, 1.15, 1.4) / 4.
MEAN_PROBS = torch.tensor([0.3625, 0.2875, 0.35])


def test_one_expert_per_token_by_hand() -> None:
    tracker = LoadBalance(experts_per_token=1)
    probs = PROBS.clone().requires_grad_(True)
    tracker.observe(probs)
    # Top-1 choices 0, 2, 0, 2: f = (1/2, 0, 1/2); loss = 3 * (0.3625 + 0.35) / 2.
    assert tracker.loss is not None
    assert_close(tracker.loss, torch.tensor(1.06875))
    tracker.loss.backward()
    # d loss / d p[t, i] = n_experts * f_i / n_tokens: 3 * 0.5 / 4 for experts 0 and 2.
    assert_close(probs.grad, torch.tensor([[0.375, 0.0, 0.375]]).expand(4, 3))


def test_two_experts_per_token_by_hand() -> None:
    tracker = LoadBalance(experts_per_token=2)
    tracker.observe(PROBS)
    # Slots {0,1}, {2,1}, {0,1}, {2,0}: f = (3/8, 3/8, 2/8).
    expected = 3 * (3 / 8 * 0.3625 + 3 / 8 * 0.2875 + 2 / 8 * 0.35)
    assert tracker.loss is not None
    assert_close(tracker.loss, torch.tensor(expected))
    assert expected == pytest.approx(0.99375)


def test_uniform_routing_gives_one() -> None:
    tracker = LoadBalance(experts_per_token=1)
    # Each expert is the top choice of one token and the mean probability is uniform.
    probs = torch.tensor([[0.5, 0.25, 0.25], [0.25, 0.5, 0.25], [0.25, 0.25, 0.5]])
    tracker.observe(probs)
    assert tracker.loss is not None
    assert_close(tracker.loss, torch.tensor(1.0))


def test_reads_the_router_of_a_mixture() -> None:
    cfg = MixtureConfig(d_in=8, d_sae=16, n_experts=4, experts_per_token=2, k=2)
    sae = MixtureOfExperts(cfg)
    tracker = LoadBalance(cfg.experts_per_token)
    x = torch.randn(32, 8)
    with attached(sae, balance=tracker):
        sae(x)
        assert sae.trackers["balance"] is tracker
    probs = sae.route(x - sae.b_dec).detach()
    reference = LoadBalance(cfg.experts_per_token)
    reference.observe(probs)
    assert tracker.loss is not None and reference.loss is not None
    assert_close(tracker.loss.detach(), reference.loss)
    assert len(sae.trackers) == 0


def test_rejects_invalid_experts_per_token() -> None:
    with pytest.raises(ValueError, match="experts_per_token=0 must be positive"):
        LoadBalance(experts_per_token=0)
