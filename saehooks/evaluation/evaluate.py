"""Score an SAE spliced into its host: reconstruction, sparsity and next-token loss.

Each batch of contexts runs through the host three times:

1. clean, with a pass-through splice that records the activation ``x`` at the hook;
2. spliced, with the SAE's reconstruction in place of the activation;
3. zero-ablated, with zeros in place of the activation.

Position 0 of every context is BOS. Its activation is several times the norm of the others (5.3
times at ``blocks.6.hook_resid_post`` of SmolLM2-135M-Instruct on a 41-token English sentence), so
the splices leave it at its clean value. Every per-token metric counts real tokens only: BOS,
padding ids and positions where an attention mask is 0 are left out (``real_token_mask``). FVU,
L0, dead and dense latents use the real positions, and CE and KL use the predictions made at a
real position for a real next token (``next_token_mask``).

NOTE: the hosts run without an attention mask, so padding must come after the text (right
padding). Causal attention then keeps it from changing the real tokens' activations.
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch

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
from saehooks.hosts.base import Host, Replacement
from saehooks.sae.sparse_autoencoder import SparseAutoencoder

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalResult:
    """Metrics of one SAE spliced at its hook, pooled over every evaluated token."""

    fvu: float
    """Fraction of variance unexplained: Σ‖x − x̂‖² / Σ‖x − x̄‖² with one global mean x̄."""
    l0: float
    """Mean number of non-zero latents per token."""
    ce_loss_clean: float
    """Mean next-token cross-entropy of the unmodified host, in nats."""
    ce_loss_spliced: float
    """Mean next-token cross-entropy with the SAE's reconstruction spliced in, in nats."""
    ce_loss_zero: float
    """Mean next-token cross-entropy with the activation replaced by zeros, in nats."""
    ce_loss_recovered: float
    """(ce_loss_zero − ce_loss_spliced) / (ce_loss_zero − ce_loss_clean), where 1 is lossless."""
    kl_div: float
    """Mean KL(clean ‖ spliced) of the next-token distributions, in nats."""
    dead_fraction: float
    """Fraction of latents that never fired on any evaluated token."""
    dense_fraction: float
    """Fraction of latents that fired on more than ``dense_threshold`` of the evaluated tokens."""
    dense_threshold: float
    """The firing frequency above which a latent counts as dense (0.1 unless set)."""
    n_tokens: int
    """Number of real (not BOS, not padding) positions evaluated."""

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


class _Accumulators:
    """Every running sum that one evaluation needs."""

    def __init__(self, d_sae: int, dense_threshold: float) -> None:
        self.dense_threshold = dense_threshold
        self.fvu = FVUAccumulator()
        self.sparsity = SparsityAccumulator(d_sae)
        self.ce_clean = MeanAccumulator()
        self.ce_spliced = MeanAccumulator()
        self.ce_zero = MeanAccumulator()
        self.kl = MeanAccumulator()

    def result(self) -> EvalResult:
        ce_clean, ce_spliced, ce_zero = (
            self.ce_clean.compute(),
            self.ce_spliced.compute(),
            self.ce_zero.compute(),
        )
        return EvalResult(
            fvu=self.fvu.compute(),
            l0=self.sparsity.l0(),
            ce_loss_clean=ce_clean,
            ce_loss_spliced=ce_spliced,
            ce_loss_zero=ce_zero,
            ce_loss_recovered=ce_loss_recovered(ce_clean, ce_spliced, ce_zero),
            kl_div=self.kl.compute(),
            dead_fraction=self.sparsity.dead_fraction(),
            dense_fraction=self.sparsity.dense_fraction(self.dense_threshold),
            dense_threshold=self.dense_threshold,
            n_tokens=self.sparsity.n_tokens,
        )


class TokenBatch(NamedTuple):
    """A batch of token ids with the attention mask that marks its padding."""

    tokens: torch.Tensor
    """Token ids ``[B, T]``, BOS at position 0."""
    attention_mask: torch.Tensor | None
    """``[B, T]``, 1 on text and 0 on padding, or None when there is no padding."""


class Evaluation(NamedTuple):
    """The pooled metrics of one evaluation and the distributions behind its pictures."""

    result: EvalResult
    """The pooled metrics."""
    feature_density: torch.Tensor
    """Each latent's firing frequency over the evaluated tokens, ``[d_sae]`` float64."""
    l0_counts: torch.Tensor
    """Entry ``i``: evaluated tokens on which exactly ``i`` latents fired, ``[d_sae + 1]``."""


def default_special_token_ids(host: Host) -> list[int]:
    """Return the token ids that evaluation leaves out: BOS, and padding when it is not EOS.

    A tokenizer whose padding id equals EOS (SmolLM2's does) keeps that id, because the token
    stream puts EOS between documents. Mark such padding with an attention mask instead.
    """
    ids = [host.bos_token_id]
    pad = getattr(host.tokenizer, "pad_token_id", None)
    eos = getattr(host.tokenizer, "eos_token_id", None)
    if pad is not None and pad != eos and pad != host.bos_token_id:
        ids.append(int(pad))
    return ids


@torch.no_grad()
def evaluate_sae(
    host: Host,
    sae: SparseAutoencoder,
    token_batches: Iterable[torch.Tensor | TokenBatch],
    hook_name: str,
    special_token_ids: Iterable[int] | None = None,
    dense_threshold: float = DENSE_THRESHOLD,
) -> EvalResult:
    """Evaluate ``sae`` spliced into ``host`` at ``hook_name``; see ``run_evaluation``."""
    evaluation = run_evaluation(
        host, sae, token_batches, hook_name, special_token_ids, dense_threshold
    )
    return evaluation.result


@torch.no_grad()
def run_evaluation(
    host: Host,
    sae: SparseAutoencoder,
    token_batches: Iterable[torch.Tensor | TokenBatch],
    hook_name: str,
    special_token_ids: Iterable[int] | None = None,
    dense_threshold: float = DENSE_THRESHOLD,
) -> Evaluation:
    """Evaluate ``sae`` spliced into ``host`` at ``hook_name`` on held-out contexts.

    Args:
        host: the model the SAE was trained on (see ``saehooks.hosts``), on either backend.
        sae: the SAE, in any dtype and on any device. Activations are moved to the SAE's
            device and dtype, and reconstructions back to the host's.
        token_batches: ``[B, T]`` token ids with BOS at position 0 and ``T >= 3``, or
            ``TokenBatch``es whose attention mask marks right padding. Batches may differ in
            size. Every metric is pooled over all of them.
        hook_name: the host hook point whose activation the SAE reconstructs.
        special_token_ids: token ids left out of every per-token metric; None for
            ``default_special_token_ids(host)``.
        dense_threshold: the firing frequency above which a latent counts as dense.

    Returns:
        The pooled metrics, described field by field in :class:`EvalResult`, and the
        distributions that ``saehooks.evaluation.plots`` draws.

    Raises:
        ValueError: ``token_batches`` is empty, a batch is not ``[B, T]`` with ``T >= 3``, or
            ``dense_threshold`` is outside [0, 1).
    """
    if not 0.0 <= dense_threshold < 1.0:
        raise ValueError(f"dense_threshold={dense_threshold} must lie in [0, 1)")
    special = list(
        default_special_token_ids(host) if special_token_ids is None else special_token_ids
    )
    sums = _Accumulators(sae.cfg.d_sae, dense_threshold)
    n_batches = 0
    for batch in token_batches:
        tokens, attention_mask = batch if isinstance(batch, TokenBatch) else (batch, None)
        if tokens.ndim != 2 or tokens.shape[1] < 3:
            raise ValueError(
                f"token batches must have shape [B, T] with T >= 3, got {tuple(tokens.shape)}"
            )
        mask = real_token_mask(tokens, special, attention_mask)  # [B, T]
        _evaluate_batch(host, sae, tokens, mask, hook_name, sums)
        n_batches += 1
        logger.debug("evaluated batch %d (%d tokens so far)", n_batches, sums.sparsity.n_tokens)
    if n_batches == 0:
        raise ValueError(
            "token_batches is empty; pass at least one [B, T] batch of held-out tokens"
        )

    result = sums.result()
    logger.info(
        "evaluated %s at %s on %d tokens: FVU %.4f, CE loss recovered %.4f",
        sae.cfg.architecture,
        hook_name,
        result.n_tokens,
        result.fvu,
        result.ce_loss_recovered,
    )
    return Evaluation(result, sums.sparsity.feature_density(), sums.sparsity.l0_counts.clone())


def _evaluate_batch(
    host: Host,
    sae: SparseAutoencoder,
    tokens: torch.Tensor,
    mask: torch.Tensor,
    hook_name: str,
    sums: _Accumulators,
) -> None:
    """Run the three forward passes for one ``[B, T]`` batch and add its real tokens to ``sums``."""
    captured: list[torch.Tensor] = []

    def capture(activation: torch.Tensor) -> torch.Tensor:
        captured.append(activation)
        return activation

    with host.splice({hook_name: capture}, skip_bos=True):
        clean_logits = host.logits(tokens)  # [B, T, vocab]
    if len(captured) != 1:
        raise RuntimeError(
            f"the clean pass reached hook {hook_name!r} {len(captured)} times, expected once"
        )

    x = captured[0][mask.to(captured[0].device)]  # [n, d_in], real tokens only
    acts = sae.encode(x.to(sae.b_dec.device, sae.cfg.torch_dtype))  # [n, d_sae]
    x_hat = sae.decode(acts).to(x.device)  # [n, d_in]
    sums.fvu.update(x, x_hat)
    sums.sparsity.update(acts)
    targets = tokens.to(clean_logits.device)
    scored = next_token_mask(mask).to(clean_logits.device)  # [B, T-2]
    sums.ce_clean.update(next_token_cross_entropy(clean_logits, targets)[scored])

    with host.splice({hook_name: _reconstruction(sae)}, skip_bos=True):
        spliced_logits = host.logits(tokens)  # [B, T, vocab]
    sums.ce_spliced.update(next_token_cross_entropy(spliced_logits, targets)[scored])
    sums.kl.update(next_token_kl_divergence(clean_logits, spliced_logits)[scored])
    del clean_logits, spliced_logits

    with host.splice({hook_name: torch.zeros_like}, skip_bos=True):
        zero_logits = host.logits(tokens)  # [B, T, vocab]
    sums.ce_zero.update(next_token_cross_entropy(zero_logits, targets)[scored])


def _reconstruction(sae: SparseAutoencoder) -> Replacement:
    """Wrap ``sae`` as a splice function that returns the host's device and dtype."""

    def reconstruct(activation: torch.Tensor) -> torch.Tensor:
        x_hat = sae(activation.to(sae.b_dec.device, sae.cfg.torch_dtype))  # [B, T, d_in]
        return x_hat.to(activation.device, activation.dtype)

    return reconstruct


# -- output ------------------------------------------------------------------------------------


def write_metrics(result: EvalResult, path: str | Path) -> Path:
    """Write ``result`` as a flat JSON object to ``path`` (usually ``metrics.json``).

    The file is written under a temporary name in the same folder and renamed into place. NaN
    metrics are written as JSON ``null``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    values: dict[str, Any] = {
        key: None if isinstance(value, float) and math.isnan(value) else value
        for key, value in result.to_dict().items()
    }
    temporary = create_temporary_beside(path)
    try:
        with open(temporary, "w", encoding="utf-8") as file:
            json.dump(values, file, indent=2)
            file.write("\n")
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def create_temporary_beside(path: Path) -> Path:
    """Create an empty file with a unique hidden name in ``path``'s folder, to rename onto it.

    The file gets mode 0o666 less the process umask, as ``open`` gives a new file (0o644 under
    the usual umask 0o022). ``tempfile.mkstemp`` would give 0o600 instead.
    """
    for _ in range(100):
        candidate = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            file_descriptor = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(file_descriptor)
        return candidate
    raise FileExistsError(f"could not create a temporary file beside {path}; 100 names were taken")


TABLE_ROWS = (
    ("fvu", "FVU", "{:.4f}"),
    ("l0", "L0", "{:.2f}"),
    ("ce_loss_clean", "CE loss clean", "{:.4f}"),
    ("ce_loss_spliced", "CE loss spliced", "{:.4f}"),
    ("ce_loss_zero", "CE loss zero-ablated", "{:.4f}"),
    ("ce_loss_recovered", "CE loss recovered", "{:.4f}"),
    ("kl_div", "KL divergence", "{:.4f}"),
    ("dead_fraction", "dead fraction", "{:.2%}"),
    ("dense_fraction", "dense fraction", "{:.2%}"),
    ("n_tokens", "tokens", "{:,}"),
)


def format_table(result: EvalResult) -> str:
    """Format ``result`` as a two-column text table, one metric per line."""
    values = result.to_dict()
    width = max(len(label) for _, label, _ in TABLE_ROWS)
    lines = []
    for key, label, number_format in TABLE_ROWS:
        value = values[key]
        text = (
            "nan" if isinstance(value, float) and math.isnan(value) else number_format.format(value)
        )
        lines.append(f"{label:<{width}}  {text:>12}")
    return "\n".join(lines)
