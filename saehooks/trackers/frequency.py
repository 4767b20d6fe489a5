"""Per-latent firing counts, kept as buffers so that they land in checkpoints."""

from __future__ import annotations

import torch

from saehooks.trackers.base import Tracker


class FireCounter(Tracker):
    """Count, per latent, the tokens on which it fired (activation > 0).

    ``fires`` and ``tokens`` accumulate until ``reset``; the trainer resets them at the start of
    each window, so ``fires / tokens`` is a windowed firing frequency. ``ever_fired`` never resets:
    a latent that has never fired since attachment is dead in the strictest sense.
    """

    hook_point_name = "hook_acts"

    def __init__(self, d_sae: int) -> None:
        super().__init__()
        self.register_buffer("fires", torch.zeros(d_sae, dtype=torch.long))
        self.register_buffer("tokens", torch.zeros((), dtype=torch.long))
        self.register_buffer("ever_fired", torch.zeros(d_sae, dtype=torch.bool))

    @torch.no_grad()
    def observe(self, value: torch.Tensor) -> None:
        fired = value > 0  # [n_tokens, d_sae]
        self.fires += fired.sum(dim=0)
        self.tokens += fired.shape[0]
        self.ever_fired |= fired.any(dim=0)

    @torch.no_grad()
    def reset(self) -> None:
        self.fires.zero_()
        self.tokens.zero_()

    def frequency(self) -> torch.Tensor:
        """Fraction of counted tokens on which each latent fired, ``[d_sae]``."""
        return self.fires.float() / self.tokens.clamp_min(1).float()

    def dead_fraction(self) -> float:
        """Fraction of latents that did not fire on any token of the current window."""
        return (self.fires == 0).float().mean().item()
