"""Which dead-latent remedy a training run uses, and its few settings."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

RemedyName = Literal[
    "none", "anthropic", "ghost_grads", "auxk", "reinit", "residual_svd", "bias_boost"
]
REMEDY_NAMES: tuple[str, ...] = (
    "none",
    "anthropic",
    "ghost_grads",
    "auxk",
    "reinit",
    "residual_svd",
    "bias_boost",
)
FrequencyMethod = Literal["window", "ema"]
FREQUENCY_METHODS: tuple[str, ...] = ("window", "ema")


@dataclass(frozen=True)
class RemedyConfig:
    """A dead-latent remedy and how it decides that a latent is dead."""

    remedy: RemedyName = "none"
    """Dead-latent remedy: none, anthropic, ghost_grads, auxk, reinit, residual_svd or
    bias_boost."""
    frequency_method: FrequencyMethod = "window"
    """How a latent is judged dead: 'window' (no fire in the last dead_window_tokens tokens) or
    'ema' (moving-average firing frequency, time constant dead_window_tokens, below
    dead_frequency)."""
    dead_frequency: float = 1e-6
    """Firing frequency below which the 'ema' method counts a latent as dead."""
    resample_interval_steps: int = 2500
    """Optimiser steps between two weight-editing events (anthropic, reinit, residual_svd,
    bias_boost)."""
    resample_max_latents: int | None = None
    """Most latents edited per event; None edits every eligible dead latent."""
    resample_sample_tokens: int = 16_384
    """Recent training inputs kept for drawing new directions and scoring them by loss."""
    resample_rewarm_steps: int = 100
    """Steps of linear learning-rate re-warm-up after anthropic, reinit and residual_svd events;
    0 disables it."""
    aux_coefficient: float | None = None
    """Weight of the auxiliary loss; None uses 1 for ghost_grads and 1/32 for auxk."""
    k_aux: int = 512
    """Dead latents that reconstruct the residual in the auxk loss."""

    def __post_init__(self) -> None:
        if self.remedy not in REMEDY_NAMES:
            raise ValueError(f"remedy={self.remedy!r} is invalid; use one of {REMEDY_NAMES}")
        if self.frequency_method not in FREQUENCY_METHODS:
            raise ValueError(
                f"frequency_method={self.frequency_method!r} is invalid; "
                f"use one of {FREQUENCY_METHODS}"
            )
        if not 0.0 < self.dead_frequency < 1.0:
            raise ValueError(
                f"dead_frequency={self.dead_frequency} must lie in the open range (0, 1)"
            )
        for name in ("resample_interval_steps", "resample_sample_tokens", "k_aux"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be positive")
        if self.resample_max_latents is not None and self.resample_max_latents < 1:
            raise ValueError(
                f"resample_max_latents={self.resample_max_latents} must be positive or None"
            )
        if self.resample_rewarm_steps < 0:
            raise ValueError(f"resample_rewarm_steps={self.resample_rewarm_steps} must be >= 0")
        if self.aux_coefficient is not None and self.aux_coefficient < 0:
            raise ValueError(f"aux_coefficient={self.aux_coefficient} must be >= 0 or None")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
