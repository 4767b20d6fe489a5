"""The inference threshold of a BatchTopK SAE, estimated while it trains."""

from __future__ import annotations

import torch

from saehooks.sae.sparse_decode import LatentSelection
from saehooks.trackers.base import Tracker


class BatchTopKThreshold(Tracker):
    """Estimate a BatchTopK SAE's inference threshold from the smallest kept activation.

    Bussmann et al. (2024), "BatchTopK Sparse Autoencoders", section 3, set the threshold to the
    expected smallest positive activation that BatchTopK keeps in a batch. This tracker keeps a
    running estimate in the SAE's ``threshold`` buffer: a plain mean over the first
    ``1 / momentum`` batches, then an exponential moving average with weight ``momentum``, so
    the estimate follows the SAE while it trains. Batches in which nothing fired are skipped.
    It only updates while the SAE is in training mode.

    The default momentum of 0.1 averages over about the last 10 batches. The smallest kept
    activation falls while an SAE trains, so a longer average lags behind: in a 293-step run on
    SmolLM2 (docs/architectures.md), momentum 0.01 ended at a threshold of 1.04 where the
    trained SAE's batches gave 0.78 to 0.84, and the saved SAE fired 20 latents per token in
    place of 32. One batch's minimum varies by a few percent, which 10 batches average out.
    """

    hook_point_name = "hook_acts"

    def __init__(self, momentum: float = 0.1) -> None:
        super().__init__()
        if not 0 < momentum <= 1:
            raise ValueError(f"momentum={momentum} must lie in (0, 1]")
        self.momentum = momentum

    @torch.no_grad()
    def observe(self, value: torch.Tensor) -> None:
        sae = self.sae
        if not sae.training:
            return
        self._update(value[value > 0])

    @torch.no_grad()
    def observe_selection(self, selection: LatentSelection, n_tokens: int) -> None:
        """Update from the selected latents, as ``observe`` would from the dense latents."""
        if not self.sae.training:
            return
        self._update(selection.values[selection.values > 0])

    def _update(self, kept: torch.Tensor) -> None:
        """Move the threshold toward the smallest of the kept activations ``kept`` ``[m]``."""
        sae = self.sae
        if kept.numel() == 0:
            return
        sae.threshold_updates += 1
        rate = max(self.momentum, 1.0 / int(sae.threshold_updates))
        sae.threshold += rate * (kept.min().float() - sae.threshold)
