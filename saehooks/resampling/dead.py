"""Deciding which latents are dead, and keeping account of the ones a remedy touched."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import torch

from saehooks.resampling.config import RemedyConfig
from saehooks.trackers.frequency import FireCounter, FiringEMA, WindowedFireCounter

if TYPE_CHECKING:
    from saehooks.training.trainer import Trainer


class FiringFrequency(Protocol):
    """A frequency tracker that can name the dead latents."""

    def frequency(self) -> torch.Tensor: ...

    def dead_mask(self) -> torch.Tensor: ...


def attach_frequency(trainer: Trainer, cfg: RemedyConfig) -> WindowedFireCounter | FiringEMA:
    """Attach the frequency tracker ``cfg.frequency_method`` names to the trainer's SAE.

    Both use the trainer's ``dead_window_tokens``: as the window of the windowed count, or as
    the time constant of the moving average. A second remedy on the same SAE reuses the tracker.
    """
    d_sae = trainer.sae.cfg.d_sae
    window = trainer.cfg.dead_window_tokens
    name = f"dead_{cfg.frequency_method}"
    existing = trainer.sae.trackers[name] if name in trainer.sae.trackers else None
    if isinstance(existing, (WindowedFireCounter, FiringEMA)):
        return existing
    tracker: WindowedFireCounter | FiringEMA
    if cfg.frequency_method == "window":
        tracker = WindowedFireCounter(d_sae, window)
    else:
        tracker = FiringEMA(d_sae, window, cfg.dead_frequency)
    tracker.to(trainer.device).attach(trainer.sae, name)
    return tracker


class DeadLatentLog:
    """When each latent was last found dead or edited, to count revivals and pace edits.

    A latent counts as revived when it fired after the latest time it was marked. Firing is read
    from the trainer's ``FireCounter``, whose ``tokens_since_fired`` has batch granularity.
    """

    def __init__(self, d_sae: int, device: torch.device) -> None:
        self.marked_at = torch.full((d_sae,), -1, dtype=torch.long, device=device)
        self.edited_at = torch.full((d_sae,), -1, dtype=torch.long, device=device)
        self.edited_total = 0
        self.events = 0

    def mark(self, dead: torch.Tensor, tokens_seen: int) -> None:
        """Record that the latents in ``dead`` ``[d_sae]`` bool were dead at ``tokens_seen``."""
        self.marked_at[dead] = tokens_seen

    def record_edit(self, latents: torch.Tensor, tokens_seen: int) -> None:
        """Record that ``latents`` (indices) were rewritten at ``tokens_seen``."""
        self.marked_at[latents] = tokens_seen
        self.edited_at[latents] = tokens_seen
        self.edited_total += int(latents.numel())
        self.events += 1

    def edited_within(self, tokens: int, tokens_seen: int) -> torch.Tensor:
        """Latents edited less than ``tokens`` tokens before ``tokens_seen``, ``[d_sae]`` bool."""
        return (self.edited_at >= 0) & (tokens_seen - self.edited_at < tokens)

    def revived(self, fires: FireCounter, tokens_seen: int) -> torch.Tensor:
        """Latents that fired after they were last marked dead or edited, ``[d_sae]`` bool."""
        since_mark = tokens_seen - self.marked_at  # [d_sae]
        return (self.marked_at >= 0) & (fires.tokens_since_fired < since_mark)

    def metrics(self, fires: FireCounter, tokens_seen: int, dead: torch.Tensor) -> dict[str, float]:
        """The flat ``dead/...`` metrics every remedy logs each step."""
        return {
            "dead/detected": float(dead.sum()),
            "dead/revived": float(self.revived(fires, tokens_seen).sum()),
            "dead/resampled_total": float(self.edited_total),
            "dead/resample_events": float(self.events),
        }
