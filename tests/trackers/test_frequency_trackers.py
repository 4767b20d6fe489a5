"""The windowed and moving-average firing frequencies agree with brute-force counts."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from saehooks.sae import SAEConfig, SparseAutoencoder
from saehooks.trackers.base import attached
from saehooks.trackers.frequency import FiringEMA, WindowedFireCounter

D_SAE = 5
BATCH_SIZES = [3, 7, 1, 12, 25, 4, 9, 2, 30, 6]


def random_acts(n_tokens: int, generator: torch.Generator) -> torch.Tensor:
    """Activations where latent j fires with probability (j + 1) / 8; latent 4 never fires."""
    rates = torch.tensor([1, 2, 3, 4, 0]) / 8
    fired = torch.rand(n_tokens, D_SAE, generator=generator) < rates
    return fired * torch.rand(n_tokens, D_SAE, generator=generator)


def test_windowed_count_matches_brute_force() -> None:
    generator = torch.Generator().manual_seed(5)
    counter = WindowedFireCounter(D_SAE, window_tokens=20, n_buckets=4)
    history: list[torch.Tensor] = []
    for batch_size in BATCH_SIZES:
        acts = random_acts(batch_size, generator)
        counter.observe(acts)
        history.append(acts > 0)
        fired = torch.cat(history)  # [tokens so far, d_sae]
        held = counter.window_tokens_held()
        assert held <= len(fired)
        if len(fired) >= 20:
            assert 20 <= held < 20 + counter.bucket_tokens
        else:
            assert held == len(fired)
        expected = fired[len(fired) - held :].sum(dim=0)
        assert torch.equal(counter.window_fires(), expected)
        assert_close(counter.frequency(), expected.float() / held)


def test_windowed_dead_mask_needs_full_window() -> None:
    counter = WindowedFireCounter(3, window_tokens=4, n_buckets=2)
    counter.observe(torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    assert counter.dead_mask().tolist() == [False, False, False]  # 3 of 4 tokens seen
    counter.observe(torch.tensor([[0.0, 2.0, 0.0]]))
    assert counter.dead_mask().tolist() == [False, False, True]
    # buckets of 2 tokens: tokens 1-2 leave when token 7 arrives, so latent 0's fire leaves
    counter.observe(torch.zeros(3, 3))
    assert counter.window_tokens_held() == 5
    assert counter.dead_mask().tolist() == [True, False, True]


def test_ema_matches_token_by_token_reference() -> None:
    generator = torch.Generator().manual_seed(6)
    ema = FiringEMA(D_SAE, time_constant_tokens=10, dead_frequency=0.01)
    decay = math.exp(-1 / 10)
    reference = [0.0] * D_SAE
    seen = 0
    for batch_size in BATCH_SIZES:
        acts = random_acts(batch_size, generator)
        ema.observe(acts)
        for row in (acts > 0).tolist():
            reference = [
                decay * r + (1 - decay) * float(f) for r, f in zip(reference, row, strict=True)
            ]
        seen += batch_size
        assert_close(ema.ema, torch.tensor(reference, dtype=torch.float64))
        corrected = torch.tensor(reference, dtype=torch.float64) / (1 - decay**seen)
        assert_close(ema.frequency(), corrected)
    assert ema.dead_mask().tolist() == [False, False, False, False, True]


def test_ema_bias_correction_hand_value() -> None:
    ema = FiringEMA(1, time_constant_tokens=1)
    ema.observe(torch.tensor([[1.0], [0.0]]))
    decay = math.exp(-1)
    # ema = (1 - d) * d (the fire is one token old); corrected by 1 - d^2 = (1 - d)(1 + d)
    assert_close(ema.ema, torch.tensor([(1 - decay) * decay], dtype=torch.float64))
    assert_close(ema.frequency(), torch.tensor([decay / (1 + decay)], dtype=torch.float64))


def test_ema_dead_mask_waits_one_time_constant() -> None:
    ema = FiringEMA(2, time_constant_tokens=8, dead_frequency=0.05)
    ema.observe(torch.tensor([[1.0, 0.0]] * 4))
    assert ema.dead_mask().tolist() == [False, False]
    ema.observe(torch.tensor([[1.0, 0.0]] * 4))
    assert ema.dead_mask().tolist() == [False, True]


@pytest.mark.parametrize(
    "make",
    [
        lambda: WindowedFireCounter(6, window_tokens=10, n_buckets=3),
        lambda: FiringEMA(6, time_constant_tokens=10),
    ],
)
def test_frequency_state_round_trips_through_state_dict(make) -> None:
    sae = SparseAutoencoder(SAEConfig(d_in=4, d_sae=6, architecture="relu", k=None))
    tracker = make()
    with attached(sae, freq=tracker), torch.no_grad():
        for n in (7, 5, 9):
            sae(torch.randn(n, 4))
        state = {key: value.clone() for key, value in sae.state_dict().items()}
    assert any(key.startswith("trackers.freq.") for key in state)

    restored_sae = SparseAutoencoder(sae.cfg)
    restored = make()
    with attached(restored_sae, freq=restored):
        restored_sae.load_state_dict(state)
        assert_close(restored.frequency(), tracker.frequency())
        assert torch.equal(restored.dead_mask(), tracker.dead_mask())


def test_frequency_trackers_reject_bad_settings() -> None:
    with pytest.raises(ValueError, match="window_tokens=0"):
        WindowedFireCounter(3, window_tokens=0)
    with pytest.raises(ValueError, match="dead_frequency=1.5"):
        FiringEMA(3, time_constant_tokens=5, dead_frequency=1.5)
