"""BatchTopK selects over the whole batch, estimates a threshold and converts to JumpReLU."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from saehooks.sae import BatchTopKSAE, JumpReLUSAE, SAEConfig, SparseAutoencoder, build_sae
from saehooks.sae.batchtopk import batch_topk
from saehooks.trackers import BatchTopKThreshold, attached


def make_batchtopk(k: int = 2, d_in: int = 5, d_sae: int = 16) -> BatchTopKSAE:
    sae = build_sae(SAEConfig(d_in=d_in, d_sae=d_sae, architecture="batchtopk", k=k))
    assert isinstance(sae, BatchTopKSAE)
    with torch.no_grad():
        sae.b_enc.fill_(10.0)  # every pre-activation positive, so exactly k * n survive the ReLU
    return sae


def test_batch_topk_keeps_k_times_tokens_on_3d_input() -> None:
    sae = make_batchtopk(k=2)
    x = torch.randn(2, 3, 5)
    with torch.no_grad():
        acts = sae.encode(x)
        flat_acts = sae.encode(x.reshape(6, 5))
    assert acts.shape == (2, 3, 16)
    assert int((acts != 0).sum()) == 12
    assert torch.equal(acts.reshape(6, 16), flat_acts)


def test_batch_topk_forward_3d_equals_flattened() -> None:
    sae = make_batchtopk(k=3)
    x = torch.randn(2, 4, 5)
    with torch.no_grad():
        assert torch.equal(sae(x).reshape(8, 5), sae(x.reshape(8, 5)))


def test_batch_topk_matches_hand_example() -> None:
    pre_acts = torch.tensor([[3.0, -1.0, 0.5], [2.0, 4.0, 1.0]])
    # k=1 over 2 tokens keeps the two largest of the whole batch: 4.0 and 3.0.
    expected = torch.tensor([[3.0, 0.0, 0.0], [0.0, 4.0, 0.0]])
    assert torch.equal(batch_topk(pre_acts, 1), expected)


def test_batch_topk_drops_negative_winners() -> None:
    pre_acts = torch.tensor([[-1.0, -2.0], [-3.0, 0.5]])
    # k=1 over 2 tokens selects 0.5 and -1.0; the ReLU zeroes the negative one.
    assert torch.equal(batch_topk(pre_acts, 1), torch.tensor([[0.0, 0.0], [0.0, 0.5]]))


def test_batch_topk_lets_tokens_differ() -> None:
    pre_acts = torch.tensor([[5.0, 4.0, 3.0], [0.1, 0.2, 0.3]])
    acts = batch_topk(pre_acts, 1)
    assert (acts[0] != 0).sum() == 2
    assert (acts[1] != 0).sum() == 0


def test_topk_selects_along_latent_axis_on_3d_input() -> None:
    sae = SparseAutoencoder(SAEConfig(d_in=5, d_sae=16, architecture="topk", k=2))
    with torch.no_grad():
        sae.b_enc.fill_(10.0)
        acts = sae.encode(torch.randn(3, 4, 5))
    assert ((acts != 0).sum(dim=-1) == 2).all()


def test_threshold_tracker_averages_smallest_kept() -> None:
    sae = make_batchtopk(k=1, d_in=2, d_sae=2)
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(2))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    tracker = BatchTopKThreshold(momentum=0.5)
    with attached(sae, threshold=tracker), torch.no_grad():
        sae(torch.tensor([[3.0, 1.0], [2.0, 0.0]]))  # keeps 3 and 2: smallest kept 2
        assert_close(sae.threshold, torch.tensor(2.0))
        sae(torch.tensor([[6.0, 0.0], [5.0, 4.0]]))  # keeps 6 and 5: mean of 2 and 5
        assert_close(sae.threshold, torch.tensor(3.5))
        sae(torch.tensor([[1.0, 0.0], [1.5, 0.0]]))  # rate is now 0.5: 3.5 + 0.5 * (1 - 3.5)
        assert_close(sae.threshold, torch.tensor(2.25))
        sae.eval()
        sae(torch.tensor([[9.0, 0.0], [8.0, 0.0]]))  # not training: no update
    assert_close(sae.threshold, torch.tensor(2.25))
    assert int(sae.threshold_updates) == 3


def test_to_jumprelu_runs_token_by_token() -> None:
    sae = make_batchtopk(k=2)
    with torch.no_grad():
        sae.b_enc.normal_()
        sae.threshold.fill_(0.7)
        sae.threshold_updates.fill_(5)
    converted = sae.to_jumprelu()
    assert isinstance(converted, JumpReLUSAE)
    assert converted.cfg.architecture == "jumprelu"
    assert converted.cfg.k is None
    assert torch.equal(converted.threshold, torch.full((16,), 0.7))
    x = torch.randn(7, 5)
    with torch.no_grad():
        pre_acts = sae.encode_pre_acts(x)
        expected = (pre_acts * (pre_acts > 0.7)) @ sae.W_dec + sae.b_dec
        assert_close(converted(x), expected)
        one_by_one = torch.cat([converted(token[None]) for token in x])
        # Equal up to rounding: a batched matrix product may sum in another order than one row.
        assert_close(one_by_one, converted(x), rtol=1e-6, atol=1e-6)


def test_to_jumprelu_without_estimate_raises() -> None:
    with pytest.raises(ValueError, match="threshold_updates=0"):
        make_batchtopk().to_jumprelu()


def test_threshold_buffers_checkpoint() -> None:
    sae = make_batchtopk()
    with torch.no_grad():
        sae.threshold.fill_(1.25)
        sae.threshold_updates.fill_(3)
    state = sae.state_dict()
    assert state["threshold"].dtype == torch.float32
    restored = make_batchtopk()
    restored.load_state_dict(state)
    assert float(restored.threshold) == 1.25
    assert int(restored.threshold_updates) == 3


def test_threshold_default_momentum_hand_values() -> None:
    sae = make_batchtopk(k=1, d_in=1, d_sae=1)
    with torch.no_grad():
        sae.W_enc.fill_(1.0)
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    with attached(sae, threshold=BatchTopKThreshold()), torch.no_grad():
        for smallest in range(1, 13):
            sae(torch.tensor([[float(smallest)]]))
    # A plain mean of 1..10 (5.5) over the first 1 / 0.1 batches, then weight 0.1:
    # 5.5 + 0.1 * (11 - 5.5) = 6.05, and 6.05 + 0.1 * (12 - 6.05) = 6.645.
    assert_close(sae.threshold, torch.tensor(6.645))
