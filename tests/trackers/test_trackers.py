"""Trackers compute their statistics from hooks, and leave no hook behind."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from saehooks.sae import SAEConfig, SparseAutoencoder
from saehooks.trackers import DecoderNormL1, FireCounter, L0Tracker, attached


def relu_sae() -> SparseAutoencoder:
    return SparseAutoencoder(SAEConfig(d_in=3, d_sae=2, architecture="relu", k=None))


def test_decoder_norm_l1_hand_value() -> None:
    sae = relu_sae()
    with torch.no_grad():
        sae.W_enc.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
        sae.W_dec.copy_(torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 2.0]]))  # row norms 5 and 2
    x = torch.tensor([[1.0, 2.0, 9.0], [-1.0, 3.0, 0.0]])  # acts [1, 2] and [0, 3]
    with attached(sae, l1=DecoderNormL1()):
        sae(x)
        # token 1: 1*5 + 2*2 = 9; token 2: 0*5 + 3*2 = 6; mean 7.5
        assert_close(sae.trackers["l1"].loss, torch.tensor(7.5))


def test_decoder_norm_l1_has_gradient_for_decoder() -> None:
    sae = relu_sae()
    with torch.no_grad():
        sae.W_enc.abs_()  # positive inputs then give positive activations
    with attached(sae, l1=DecoderNormL1()):
        sae(torch.randn(5, 3).abs() + 1)
        sae.trackers["l1"].loss.backward()
    assert sae.W_dec.grad is not None and sae.W_dec.grad.abs().sum() > 0


def test_l0_and_fire_counts_match_brute_force() -> None:
    sae = SparseAutoencoder(SAEConfig(d_in=4, d_sae=7, architecture="relu", k=None))
    batches = [torch.randn(5, 4), torch.randn(3, 2, 4)]
    counter = FireCounter(7)
    expected_fires = torch.zeros(7, dtype=torch.long)
    with attached(sae, l0=L0Tracker(), fires=counter), torch.no_grad():
        for x in batches:
            sae(x)
            acts = sae.encode(x).reshape(-1, 7)
            brute_l0 = sum(int((row > 0).sum()) for row in acts) / acts.shape[0]
            assert sae.trackers["l0"].l0 == pytest.approx(brute_l0)
            for row in acts:
                expected_fires += (row > 0).long()
    # encode() ran once more per batch, so every count is doubled
    assert torch.equal(counter.fires, 2 * expected_fires)
    assert int(counter.tokens) == 2 * 11


def test_tokens_since_fired_and_dead_mask() -> None:
    counter = FireCounter(3)
    counter.observe(torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    counter.observe(torch.tensor([[0.0, 2.0, 0.0]]))
    assert counter.tokens_since_fired.tolist() == [1, 0, 3]
    assert counter.dead_mask(3).tolist() == [False, False, True]
    assert counter.ever_fired.tolist() == [True, True, False]
    assert_close(counter.frequency(), torch.tensor([1 / 3, 1 / 3, 0.0]))


def test_attached_removes_hooks_after_error() -> None:
    sae = relu_sae()
    with pytest.raises(RuntimeError, match="boom"), attached(sae, l0=L0Tracker()):
        assert len(sae.hook_acts._forward_hooks) == 1
        raise RuntimeError("boom")
    assert len(sae.hook_acts._forward_hooks) == 0
    assert len(sae.trackers) == 0


def test_tracker_state_lands_in_state_dict() -> None:
    sae = relu_sae()
    with attached(sae, fires=FireCounter(2)):
        keys = set(sae.state_dict())
    assert {"trackers.fires.fires", "trackers.fires.tokens_since_fired"} <= keys


def test_duplicate_tracker_name_raises() -> None:
    sae = relu_sae()
    with attached(sae, l0=L0Tracker()), pytest.raises(ValueError, match="'l0'"):
        L0Tracker().attach(sae, "l0")
