"""Per-latent firing counts, kept as buffers so that they land in checkpoints."""

from __future__ import annotations

import torch

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
        fired_any = fired.any(dim=0)  # [d_sae]
        self.fires += fired.sum(dim=0)
        self.tokens += fired.shape[0]
        self.tokens_since_fired += fired.shape[0]
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
