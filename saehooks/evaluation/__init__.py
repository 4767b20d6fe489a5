"""Metrics of an SAE spliced into its host, pooled over held-out tokens."""

from saehooks.evaluation.evaluate import (
    EvalResult,
    Evaluation,
    TokenBatch,
    default_special_token_ids,
    evaluate_sae,
    format_table,
    run_evaluation,
    write_metrics,
)
from saehooks.evaluation.metrics import (
    DENSE_THRESHOLD,
    FVUAccumulator,
    MeanAccumulator,
    SparsityAccumulator,
    ce_loss_recovered,
    next_token_cross_entropy,
    next_token_kl_divergence,
    next_token_mask,
    real_token_mask,
)
from saehooks.evaluation.plots import ReportFiles, write_report

__all__ = [
    "DENSE_THRESHOLD",
    "EvalResult",
    "Evaluation",
    "FVUAccumulator",
    "MeanAccumulator",
    "ReportFiles",
    "SparsityAccumulator",
    "TokenBatch",
    "ce_loss_recovered",
    "default_special_token_ids",
    "evaluate_sae",
    "format_table",
    "next_token_cross_entropy",
    "next_token_kl_divergence",
    "next_token_mask",
    "real_token_mask",
    "run_evaluation",
    "write_metrics",
    "write_report",
]
