"""The recent-input sample keeps the last tokens' inputs, residuals and firing thresholds."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from saehooks.resampling.sample import RecentSample
from saehooks.sae import SAEConfig, SparseAutoencoder
from saehooks.trackers.base import attached


def test_ring_keeps_last_tokens_and_thresholds() -> None:
    sae = SparseAutoencoder(SAEConfig(d_in=4, d_sae=6, architecture="topk", k=2))
    sample = RecentSample(capacity=5, d_in=4, keep_thresholds=True)
    seen_x, seen_residuals, seen_thresholds = [], [], []
    with attached(sae, recent=sample), torch.no_grad():
        for n in (3, 4, 1, 7):
            x = torch.randn(2, n, 4)  # leading dims are flattened before the hook points
            x_hat = sae(x)
            acts = sae.encode(x).reshape(-1, 6)
            seen_x.append(x.reshape(-1, 4))
            seen_residuals.append((x - x_hat).reshape(-1, 4))
            positive = [row[row > 0] for row in acts]
            seen_thresholds += [float(p.min()) if len(p) else 0.0 for p in positive]

    x_all, residual_all = torch.cat(seen_x), torch.cat(seen_residuals)
    assert sample.filled == 5
    stored = sample.sample()
    # the oldest kept token sits at ``position``, the newest just before it
    order = (sample.position + torch.arange(5)) % 5
    assert_close(stored.inputs[order], x_all[-5:])
    assert_close(stored.residuals[order], residual_all[-5:])
    assert_close(stored.thresholds[order], torch.tensor(seen_thresholds[-5:]))


def test_thresholds_are_zero_unless_kept() -> None:
    sae = SparseAutoencoder(SAEConfig(d_in=4, d_sae=6, architecture="relu", k=None))
    sample = RecentSample(capacity=8, d_in=4)
    with attached(sae, recent=sample), torch.no_grad():
        sae(torch.randn(3, 4))
        assert len(sae.hook_acts._forward_hooks) == 0
    assert sample.filled == 3
    assert torch.count_nonzero(sample.sample().thresholds) == 0


def test_sample_needs_positive_capacity() -> None:
    with pytest.raises(ValueError, match="capacity=0"):
        RecentSample(capacity=0, d_in=4)
