"""L0 penalties for JumpReLU SAEs: the straight-through step and its tanh-smoothed variant."""

from __future__ import annotations

import torch

from saehooks.sae.jumprelu import step
from saehooks.trackers.base import PenaltyTracker


class StepL0Penalty(PenaltyTracker):
    """L0 of a JumpReLU SAE: mean over tokens of the number of latents with ``z > threshold``.

    It reads the pre-activations z at ``hook_pre_acts`` and differentiates through the
    straight-through estimator of ``saehooks.sae.jumprelu.step``, so its gradient reaches only
    the thresholds (Rajamanoharan et al., 2024, "Jumping Ahead", section 4).
    """

    hook_point_name = "hook_pre_acts"

    def observe(self, value: torch.Tensor) -> None:
        sae = self.sae
        fired = step(value, sae.threshold, sae.cfg.jumprelu_bandwidth)  # [n, d_sae]
        self.loss = fired.sum(dim=-1).mean()


class TanhL0Penalty(PenaltyTracker):
    """A smooth stand-in for L0: mean over tokens of sum_j tanh(scale * |acts_j| * ||W_dec[j]||).

    Each term approaches 1 for an active latent and is 0 for an inactive one. Unlike the step,
    tanh has a true gradient, which reaches the encoder through the active latents and the
    thresholds through JumpReLU's estimator. This is the sparsity penalty Anthropic's
    interpretability team trains JumpReLU SAEs with (SAELens 6.11 implements it as the 'tanh'
    sparsity mode, with scale 4 by default).
    """

    hook_point_name = "hook_acts"

    def __init__(self, coefficient: float = 1.0, warmup_steps: int = 0, scale: float = 4.0):
        super().__init__(coefficient, warmup_steps)
        if not scale > 0:
            raise ValueError(f"scale={scale} must be positive")
        self.scale = scale

    def observe(self, value: torch.Tensor) -> None:
        decoder_norms = self.sae.W_dec.norm(dim=1)  # [d_sae]
        smooth_l0 = torch.tanh(self.scale * value.abs() * decoder_norms)  # [n, d_sae]
        self.loss = smooth_l0.float().sum(dim=-1).mean()
