"""Streaming, pooled evaluation metrics: FVU, next-token CE and KL, L0, dead and dense latents.

Every accumulator keeps float64 sums over all tokens seen so far and divides once at the end,
so a metric over several batches equals the metric over their concatenation. Averaging per-batch
ratios would weight a small batch as much as a large one and is never done here.

The per-token functions take logits ``[B, T, vocab]`` of contexts whose position 0 is BOS and
score the predictions made at positions ``1 .. T-2`` against the tokens at ``2 .. T-1``: the
prediction made at the BOS position is left out. ``real_token_mask`` marks the positions that
hold text rather than BOS or padding, and ``next_token_mask`` aligns that mask with those
predictions.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

DENSE_THRESHOLD = 0.1
"""A latent is dense when it fires on more than this fraction of the evaluated tokens."""

# Positions per chunk when scoring logits: 256 x 49,152 float32 logits are about 50 MB, so
# log-softmax never copies a whole [B, T, vocab] tensor at once.
DEFAULT_CHUNK_POSITIONS = 256


class FVUAccumulator:
    """Fraction of variance unexplained, pooled over every token with one global mean.

    FVU = Σ‖x − x̂‖² / Σ‖x − x̄‖², where x̄ is the mean of all tokens passed to ``update``. The
    denominator is streamed as Σ‖x‖² − ‖Σx‖² / n, in float64.
    """

    def __init__(self) -> None:
        self.squared_error = 0.0
        self.squared_norm = 0.0
        self.x_sum: torch.Tensor | None = None
        self.n_tokens = 0

    @torch.no_grad()
    def update(self, x: torch.Tensor, x_hat: torch.Tensor) -> None:
        """Add tokens ``x`` and reconstructions ``x_hat``, both ``[..., d]``."""
        if x.shape != x_hat.shape:
            raise ValueError(f"x has shape {tuple(x.shape)} but x_hat has {tuple(x_hat.shape)}")
        x = x.reshape(-1, x.shape[-1]).double()  # [n, d]
        x_hat = x_hat.reshape(-1, x_hat.shape[-1]).double()  # [n, d]

        self.squared_error += (x - x_hat).square().sum().item()
        self.squared_norm += x.square().sum().item()
        x_sum = x.sum(dim=0)  # [d]
        self.x_sum = x_sum if self.x_sum is None else self.x_sum + x_sum
        self.n_tokens += x.shape[0]

    def compute(self) -> float:
        """Return the pooled FVU, or NaN when no tokens or no variance were seen."""
        if self.x_sum is None or self.n_tokens == 0:
            return math.nan
        total_variance = self.squared_norm - self.x_sum.square().sum().item() / self.n_tokens
        if total_variance <= 0:
            logger.warning("FVU is undefined: the %d evaluated tokens are all equal", self.n_tokens)
            return math.nan
        return self.squared_error / total_variance


class MeanAccumulator:
    """Mean of per-token values pooled over batches: Σ values / count, in float64."""

    def __init__(self) -> None:
        self.total = 0.0
        self.count = 0

    @torch.no_grad()
    def update(self, values: torch.Tensor) -> None:
        """Add per-token values of any shape."""
        self.total += values.double().sum().item()
        self.count += values.numel()

    def compute(self) -> float:
        """Return the pooled mean, or NaN when nothing was added."""
        return self.total / self.count if self.count else math.nan


class SparsityAccumulator:
    """Per-latent firing counts and per-token L0 counts, pooled over every token seen.

    From them: L0 (mean non-zero latents per token), the fraction of latents that never fired,
    the fraction that fired on more than a threshold of the tokens, each latent's firing
    frequency and the histogram of L0 over tokens.
    """

    def __init__(self, d_sae: int) -> None:
        self.d_sae = d_sae
        self.n_tokens = 0
        self.fire_counts = torch.zeros(d_sae, dtype=torch.int64)
        """Tokens on which each latent was non-zero, ``[d_sae]``."""
        self.l0_counts = torch.zeros(d_sae + 1, dtype=torch.int64)
        """Entry ``i``: tokens on which exactly ``i`` latents were non-zero, ``[d_sae + 1]``."""

    @torch.no_grad()
    def update(self, acts: torch.Tensor) -> None:
        """Add latent activations ``acts`` of shape ``[..., d_sae]``, one row per real token."""
        if acts.shape[-1] != self.d_sae:
            raise ValueError(f"acts have {acts.shape[-1]} latents, expected d_sae={self.d_sae}")
        fired = acts.reshape(-1, self.d_sae) != 0  # [n, d_sae]
        self.n_tokens += fired.shape[0]
        self.fire_counts += fired.sum(dim=0).cpu()
        per_token = fired.sum(dim=1).cpu()  # [n]
        self.l0_counts += torch.bincount(per_token, minlength=self.d_sae + 1)

    @property
    def ever_fired(self) -> torch.Tensor:
        """Whether each latent fired on any token, ``[d_sae]`` bool."""
        return self.fire_counts > 0

    def l0(self) -> float:
        """Return the mean number of non-zero latents per token, or NaN before any update."""
        if not self.n_tokens:
            return math.nan
        return int(self.fire_counts.sum().item()) / self.n_tokens

    def dead_fraction(self) -> float:
        """Return the fraction of latents that never fired, or NaN before any update."""
        if not self.n_tokens:
            return math.nan
        return 1.0 - self.ever_fired.double().mean().item()

    def dense_fraction(self, threshold: float = DENSE_THRESHOLD) -> float:
        """Return the fraction of latents firing on more than ``threshold`` of the tokens."""
        if not self.n_tokens:
            return math.nan
        return (self.feature_density() > threshold).double().mean().item()

    def feature_density(self) -> torch.Tensor:
        """Return each latent's firing frequency over the tokens seen, ``[d_sae]`` float64."""
        return self.fire_counts.double() / max(self.n_tokens, 1)


def real_token_mask(
    tokens: torch.Tensor,
    special_token_ids: Iterable[int],
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mark the positions of ``tokens`` ``[B, T]`` that hold text: ``[B, T]`` bool.

    A position is left out when its token is one of ``special_token_ids`` (BOS, a padding id)
    or when ``attention_mask`` ``[B, T]`` is 0 there.
    """
    mask = torch.ones_like(tokens, dtype=torch.bool)
    for token_id in special_token_ids:
        mask &= tokens != token_id
    if attention_mask is not None:
        if attention_mask.shape != tokens.shape:
            raise ValueError(
                f"attention_mask has shape {tuple(attention_mask.shape)}, expected the tokens' "
                f"shape {tuple(tokens.shape)}"
            )
        mask &= attention_mask.to(tokens.device).bool()
    return mask


def next_token_mask(token_mask: torch.Tensor) -> torch.Tensor:
    """Align a ``[B, T]`` real-token mask with the ``[B, T-2]`` next-token scores.

    Entry ``[b, i]`` of a score is the prediction made at position ``i + 1`` for the token at
    ``i + 2``, so it counts only when both positions hold real tokens: a prediction made at BOS
    or padding, or one whose target is padding, is left out.
    """
    return token_mask[:, 1:-1] & token_mask[:, 2:]  # [B, T-2]


def ce_loss_recovered(ce_loss_clean: float, ce_loss_spliced: float, ce_loss_zero: float) -> float:
    """Return (CE_zero − CE_spliced) / (CE_zero − CE_clean), from pooled mean losses.

    1 means splicing the SAE costs nothing, 0 means it is as bad as zero-ablating the activation.
    Returns NaN, with a warning, when zero-ablation does not change the loss.
    """
    denominator = ce_loss_zero - ce_loss_clean
    if denominator == 0:
        logger.warning("CE loss recovered is undefined: zero-ablation leaves the loss unchanged")
        return math.nan
    return (ce_loss_zero - ce_loss_spliced) / denominator


def _check_logits(logits: torch.Tensor) -> None:
    if logits.ndim != 3:
        raise ValueError(f"expected logits [B, T, vocab], got shape {tuple(logits.shape)}")
    if logits.shape[1] < 3:
        raise ValueError(
            f"contexts of length {logits.shape[1]} have no prediction after the one made at BOS; "
            f"use a context length of at least 3"
        )


def _position_chunks(length: int, chunk_positions: int) -> list[tuple[int, int]]:
    """Split the scored positions ``1 .. length-2`` into ``(start, stop)`` ranges."""
    if chunk_positions < 1:
        raise ValueError(f"chunk_positions must be at least 1, got {chunk_positions}")
    return [
        (start, min(start + chunk_positions, length - 1))
        for start in range(1, length - 1, chunk_positions)
    ]


@torch.no_grad()
def next_token_cross_entropy(
    logits: torch.Tensor, tokens: torch.Tensor, chunk_positions: int = DEFAULT_CHUNK_POSITIONS
) -> torch.Tensor:
    """Compute the cross-entropy of each next-token prediction after BOS, in nats.

    Args:
        logits: ``[B, T, vocab]`` model outputs for ``tokens``.
        tokens: ``[B, T]`` token ids with BOS at position 0.
        chunk_positions: positions of one context scored at a time, which bounds the memory
            that log-softmax allocates.

    Returns:
        ``[B, T-2]`` float32 losses: entry ``[b, i]`` scores the prediction made at position
        ``i + 1`` against ``tokens[b, i + 2]``.
    """
    _check_logits(logits)
    if tokens.shape != logits.shape[:2]:
        raise ValueError(
            f"tokens have shape {tuple(tokens.shape)}, expected [B, T] = {tuple(logits.shape[:2])} "
            f"to match the logits"
        )
    batch, length = tokens.shape
    losses = torch.empty(batch, length - 2, dtype=torch.float32, device=logits.device)
    for row in range(batch):
        for start, stop in _position_chunks(length, chunk_positions):
            chunk = logits[row, start:stop].float()  # [chunk, vocab]
            targets = tokens[row, start + 1 : stop + 1]  # [chunk]
            losses[row, start - 1 : stop - 1] = F.cross_entropy(chunk, targets, reduction="none")
    return losses


@torch.no_grad()
def next_token_kl_divergence(
    clean_logits: torch.Tensor,
    spliced_logits: torch.Tensor,
    chunk_positions: int = DEFAULT_CHUNK_POSITIONS,
) -> torch.Tensor:
    """Compute KL(clean ‖ spliced) of each next-token distribution after BOS, in nats.

    Both distributions go through log-softmax before the difference is taken, so peaked logits
    such as ``[0, −200, 5]`` against ``[0, −190, 5]`` give a finite value near 0 rather than
    ``0 · log 0`` terms.

    Args:
        clean_logits: ``[B, T, vocab]`` logits of the unmodified model.
        spliced_logits: ``[B, T, vocab]`` logits with the SAE spliced in.
        chunk_positions: positions of one context processed at a time.

    Returns:
        ``[B, T-2]`` float32 divergences for the predictions made at positions ``1 .. T-2``.
    """
    _check_logits(clean_logits)
    if spliced_logits.shape != clean_logits.shape:
        raise ValueError(
            f"spliced logits have shape {tuple(spliced_logits.shape)}, expected the clean "
            f"logits' shape {tuple(clean_logits.shape)}"
        )
    batch, length, _ = clean_logits.shape
    divergences = torch.empty(batch, length - 2, dtype=torch.float32, device=clean_logits.device)
    for row in range(batch):
        for start, stop in _position_chunks(length, chunk_positions):
            log_p = clean_logits[row, start:stop].float().log_softmax(dim=-1)  # [chunk, vocab]
            log_q = spliced_logits[row, start:stop].float().log_softmax(dim=-1)  # [chunk, vocab]
            # kl_div(input=log q, target=log p) sums p · (log p − log q) over the vocabulary.
            terms = F.kl_div(log_q, log_p, reduction="none", log_target=True)  # [chunk, vocab]
            divergences[row, start - 1 : stop - 1] = terms.sum(dim=-1)
    return divergences
