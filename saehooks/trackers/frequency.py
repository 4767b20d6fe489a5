"""Per-latent firing statistics: total, windowed and moving-average counts, kept as buffers."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from saehooks.sae.sparse_decode import LatentSelection
from saehooks.trackers.base import Tracker


class FireCounter(Tracker):
    """Count, per latent, the tokens on which it fired (activation > 0).

    - ``fires`` and ``tokens`` accumulate until ``reset``, so ``frequency()`` is the firing
      frequency since the last reset.
    - ``tokens_since_fired`` counts, per latent, the tokens seen since the latest batch in which it
      fired (batch granularity), which gives a sliding-window dead test without resets.
    - ``ever_fired`` never resets.
    """

    hook_point_name = "hook_acts"

    def __init__(self, d_sae: int) -> None:
        super().__init__()
        self.register_buffer("fires", torch.zeros(d_sae, dtype=torch.long))
        self.register_buffer("tokens", torch.zeros((), dtype=torch.long))
        self.register_buffer("tokens_since_fired", torch.zeros(d_sae, dtype=torch.long))
        self.register_buffer("ever_fired", torch.zeros(d_sae, dtype=torch.bool))

    @torch.no_grad()
    def observe(self, value: torch.Tensor) -> None:
        fired = value > 0  # [n_tokens, d_sae]
        self._add(fired.sum(dim=0), fired.shape[0])

    @torch.no_grad()
    def observe_selection(self, selection: LatentSelection, n_tokens: int) -> None:
        """Update from the selected latents of ``n_tokens`` tokens, as ``observe`` would."""
        self._add(fires_per_latent(selection, self.fires.shape[0]), n_tokens)

    def _add(self, fires: torch.Tensor, n_tokens: int) -> None:
        """Count ``fires`` ``[d_sae]`` from a batch of ``n_tokens`` tokens."""
        fired_any = fires > 0  # [d_sae]
        self.fires += fires
        self.tokens += n_tokens
        self.tokens_since_fired += n_tokens
        self.tokens_since_fired[fired_any] = 0
        self.ever_fired |= fired_any

    @torch.no_grad()
    def reset(self) -> None:
        """Zero ``fires`` and ``tokens``; the other buffers keep counting."""
        self.fires.zero_()
        self.tokens.zero_()

    def frequency(self) -> torch.Tensor:
        """Fraction of counted tokens on which each latent fired, ``[d_sae]``."""
        return self.fires.float() / self.tokens.clamp_min(1).float()

    def dead_mask(self, window_tokens: int) -> torch.Tensor:
        """Latents that fired on none of the last ``window_tokens`` tokens, ``[d_sae]`` bool."""
        return self.tokens_since_fired >= window_tokens

    def dead_fraction(self, window_tokens: int) -> float:
        return self.dead_mask(window_tokens).float().mean().item()


class WindowedFireCounter(Tracker):
    """Count, per latent, the fires within a sliding window of the most recent tokens.

    Tokens go into ``n_buckets + 1`` buckets of ``bucket_tokens`` each, in arrival order and split
    at token granularity, so a batch may straddle two buckets. When the newest bucket fills, the
    oldest one is emptied and reused. The window therefore spans the last ``window_tokens_held()``
    tokens: at least ``window_tokens`` once that many have been seen, and less than
    ``window_tokens + bucket_tokens``.
    """

    hook_point_name = "hook_acts"

    def __init__(self, d_sae: int, window_tokens: int, n_buckets: int = 8) -> None:
        super().__init__()
        if window_tokens < 1 or n_buckets < 1:
            raise ValueError(
                f"window_tokens={window_tokens} and n_buckets={n_buckets} must both be positive"
            )
        self.window_tokens = window_tokens
        self.bucket_tokens = -(-window_tokens // n_buckets)  # ceiling division
        self.register_buffer("bucket_fires", torch.zeros(n_buckets + 1, d_sae, dtype=torch.long))
        self.register_buffer("bucket_counts", torch.zeros(n_buckets + 1, dtype=torch.long))
        self.register_buffer("current", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def observe(self, value: torch.Tensor) -> None:
        fired = (value > 0).long()  # [n_tokens, d_sae]
        self._add(lambda start, stop: fired[start:stop].sum(dim=0), fired.shape[0])

    @torch.no_grad()
    def observe_selection(self, selection: LatentSelection, n_tokens: int) -> None:
        """Update from the selected latents of ``n_tokens`` tokens, as ``observe`` would."""
        d_sae = self.bucket_fires.shape[1]
        self._add(lambda start, stop: fires_per_latent(selection, d_sae, start, stop), n_tokens)

    def _add(self, fires_of: Callable[[int, int], torch.Tensor], n_tokens: int) -> None:
        """Count the fires of each token range ``start:stop``, given by ``fires_of``."""
        start = 0
        while start < n_tokens:
            slot = int(self.current)
            room = self.bucket_tokens - int(self.bucket_counts[slot])
            take = min(room, n_tokens - start)
            self.bucket_fires[slot] += fires_of(start, start + take)
            self.bucket_counts[slot] += take
            start += take
            if int(self.bucket_counts[slot]) == self.bucket_tokens:
                self._advance()

    def _advance(self) -> None:
        slot = (int(self.current) + 1) % self.bucket_counts.shape[0]
        self.bucket_fires[slot].zero_()
        self.bucket_counts[slot].zero_()
        self.current.fill_(slot)

    def window_tokens_held(self) -> int:
        """Number of most recent tokens that the window counts cover."""
        return int(self.bucket_counts.sum())

    def window_fires(self) -> torch.Tensor:
        """Fires per latent over the last ``window_tokens_held()`` tokens, ``[d_sae]`` long."""
        return self.bucket_fires.sum(dim=0)

    def frequency(self) -> torch.Tensor:
        """Fraction of the window's tokens on which each latent fired, ``[d_sae]``."""
        return self.window_fires().float() / max(1, self.window_tokens_held())

    def dead_mask(self) -> torch.Tensor:
        """Latents that fired on none of at least ``window_tokens`` recent tokens, ``[d_sae]``.

        All False until ``window_tokens`` tokens have been seen.
        """
        if self.window_tokens_held() < self.window_tokens:
            return torch.zeros_like(self.bucket_fires[0], dtype=torch.bool)
        return self.window_fires() == 0


class FiringEMA(Tracker):
    """Exponential moving average of each latent's firing indicator, updated token by token.

    After token t, ``ema = decay * ema + (1 - decay) * fired_t`` with
    ``decay = exp(-1 / time_constant_tokens)``. A batch of n tokens is folded in exactly, in
    token order, as ``decay**n * ema + sum_i (1 - decay) * decay**(n - 1 - i) * fired_i``.
    ``frequency()`` divides by ``1 - decay**tokens`` to remove the bias of the zero start, as
    Adam does for its moments (Kingma and Ba, 2015, section 3). The state is kept in float64 so
    that millions of updates do not drift.
    """

    hook_point_name = "hook_acts"

    def __init__(self, d_sae: int, time_constant_tokens: int, dead_frequency: float = 1e-6) -> None:
        super().__init__()
        if time_constant_tokens < 1:
            raise ValueError(f"time_constant_tokens={time_constant_tokens} must be positive")
        if not 0.0 < dead_frequency < 1.0:
            raise ValueError(f"dead_frequency={dead_frequency} must lie in the open range (0, 1)")
        self.time_constant_tokens = time_constant_tokens
        self.dead_frequency = dead_frequency
        self.decay = math.exp(-1.0 / time_constant_tokens)
        self.register_buffer("ema", torch.zeros(d_sae, dtype=torch.float64))
        self.register_buffer("tokens", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def observe(self, value: torch.Tensor) -> None:
        fired = (value > 0).to(torch.float64)  # [n_tokens, d_sae]
        n = fired.shape[0]
        age = torch.arange(n - 1, -1, -1, dtype=torch.float64, device=fired.device)  # [n]
        weights = (1.0 - self.decay) * self.decay**age  # [n], newest token weighs most
        self.ema.mul_(self.decay**n).add_(weights @ fired)
        self.tokens += n

    @torch.no_grad()
    def observe_selection(self, selection: LatentSelection, n_tokens: int) -> None:
        """Update from the selected latents of ``n_tokens`` tokens, as ``observe`` would."""
        age = torch.arange(n_tokens - 1, -1, -1, dtype=torch.float64, device=self.ema.device)
        weights = (1.0 - self.decay) * self.decay**age  # [n], newest token weighs most
        counts = selection.row_starts.diff()  # [n], selected latents per token
        token_weights = weights.repeat_interleave(counts)  # [nnz]
        fired = selection.values > 0  # [nnz]
        added = torch.zeros_like(self.ema).index_add_(
            0, selection.indices[fired], token_weights[fired]
        )  # [d_sae]
        self.ema.mul_(self.decay**n_tokens).add_(added)
        self.tokens += n_tokens

    def frequency(self) -> torch.Tensor:
        """Bias-corrected moving-average firing frequency, ``[d_sae]`` float64."""
        seen = int(self.tokens)
        if seen == 0:
            return torch.zeros_like(self.ema)
        return self.ema / (1.0 - self.decay**seen)

    def dead_mask(self) -> torch.Tensor:
        """Latents whose frequency is below ``dead_frequency``, ``[d_sae]`` bool.

        All False until ``time_constant_tokens`` tokens have been seen, so that the first
        batches do not condemn every latent that has not fired yet.
        """
        if int(self.tokens) < self.time_constant_tokens:
            return torch.zeros_like(self.ema, dtype=torch.bool)
        return self.frequency() < self.dead_frequency


def fires_per_latent(
    selection: LatentSelection, d_sae: int, start: int = 0, stop: int | None = None
) -> torch.Tensor:
    """Count, per latent, the tokens ``start:stop`` of a selection on which it fired, ``[d_sae]``.

    A latent fires on a token when its selected value is positive, as ``value > 0`` counts it
    in the dense latents. The ``select_*`` functions keep a latent at most once per token, so
    each count is a number of tokens.
    """
    first = int(selection.row_starts[start])
    last = int(selection.row_starts[-1 if stop is None else stop])
    values = selection.values[first:last]  # [m]
    indices = selection.indices[first:last]  # [m]
    return torch.bincount(indices[values > 0], minlength=d_sae)  # [d_sae] long
