"""Sparsity penalties and the L0 statistic, read from the latent activations."""

from __future__ import annotations

import torch

from saehooks.sae.sparse_decode import LatentSelection
from saehooks.trackers.base import PenaltyTracker, Tracker


class DecoderNormL1(PenaltyTracker):
    """L1 penalty weighted by decoder-row norms: mean over tokens of sum_j |acts_j| * ||W_dec[j]||.

    Weighting by the decoder norm stops the optimiser from shrinking activations while growing
    decoder rows to dodge the penalty (Anthropic, "Update on how we train SAEs", Circuits
    Updates, April 2024).
    """

    hook_point_name = "hook_acts"

    def observe(self, value: torch.Tensor) -> None:
        decoder_norms = self.sae.W_dec.norm(dim=1)  # [d_sae]
        self.loss = (value.abs() * decoder_norms).sum(dim=-1).mean()


class L0Tracker(Tracker):
    """Mean number of non-zero latents per token in the latest forward pass."""

    hook_point_name = "hook_acts"

    def __init__(self) -> None:
        super().__init__()
        self.l0: float = float("nan")

    @torch.no_grad()
    def observe(self, value: torch.Tensor) -> None:
        self.l0 = (value != 0).sum(dim=-1).float().mean().item()

    @torch.no_grad()
    def observe_selection(self, selection: LatentSelection, n_tokens: int) -> None:
        """Update from the selected latents of ``n_tokens`` tokens, as ``observe`` would."""
        self.l0 = (selection.values != 0).sum().item() / max(n_tokens, 1)


class GateL1(DecoderNormL1):
    """L1 penalty on a gated SAE's gate path: mean over tokens of sum_j relu(pi_gate_j) |W_dec[j]|.

    Rajamanoharan et al. (2024), "Improving Dictionary Learning with Gated Sparse Autoencoders",
    section 3.2, penalise ``relu(pi_gate)`` rather than the activations, so that the magnitudes
    suffer no shrinkage. Their decoder rows have unit norm, as during training here, which makes
    the weighting by ``||W_dec[j]||`` equal to 1.
    """

    hook_point_name = "hook_gate_pre_acts"

    def observe(self, value: torch.Tensor) -> None:
        super().observe(torch.relu(value))
