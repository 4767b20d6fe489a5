"""Metrics of an SAE spliced into its host, pooled over held-out tokens."""

from saehooks.evaluation.evaluate import EvalResult, evaluate_sae, format_table, write_metrics
from saehooks.evaluation.metrics import (
    FVUAccumulator,
    MeanAccumulator,
    SparsityAccumulator,
    ce_loss_recovered,
    next_token_cross_entropy,
    next_token_kl_divergence,
)

__all__ = [
    "EvalResult",
    "FVUAccumulator",
    "MeanAccumulator",
    "SparsityAccumulator",
    "ce_loss_recovered",
    "evaluate_sae",
    "format_table",
    "next_token_cross_entropy",
    "next_token_kl_divergence",
    "write_metrics",
]
