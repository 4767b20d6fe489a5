"""Decoding from the selected latents of each token, without the dense ``[n, d_sae]`` product.

A TopK SAE keeps ``k`` of ``d_sae`` latents per token (a BatchTopK SAE ``k`` on average), so
``acts @ W_dec`` multiplies mostly zeros. ``sparse_decode`` and ``decode_selection`` sum the
selected decoder rows instead, and their backward touches only those rows too: ``n * k * d_in``
multiply-adds per pass instead of ``n * d_sae * d_in``.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal, NamedTuple

import torch
from torch.nn import functional as F


class LatentSelection(NamedTuple):
    """The selected latents of ``n`` tokens in CSR order: token by token, latents ascending."""

    values: torch.Tensor
    """Activations of the selected latents, ``[nnz]``."""
    indices: torch.Tensor
    """Latent index of each value, ``[nnz]``, distinct and ascending within a token."""
    positions: torch.Tensor
    """Position of each value in the flattened ``[n * d_sae]`` latents, ``[nnz]``, ascending."""
    row_starts: torch.Tensor
    """Offset of each token's first value, with ``nnz`` appended: ``[n + 1]``."""


def select_rows(values: torch.Tensor, indices: torch.Tensor, d_sae: int) -> LatentSelection:
    """Turn per-token selections ``values`` and ``indices`` ``[n, k]`` into a ``LatentSelection``.

    The indices of one token must be distinct, as ``topk`` returns them. This function does not
    check that, but ``sparse_decode`` does.
    """
    n_tokens, k = values.shape
    indices, order = indices.long().sort(dim=-1)  # [n, k]
    values = values.gather(-1, order)  # [n, k]
    token_offsets = torch.arange(n_tokens, device=indices.device).unsqueeze(-1) * d_sae  # [n, 1]
    row_starts = torch.arange(0, n_tokens * k + 1, k, device=indices.device)  # [n + 1]
    return LatentSelection(
        values.reshape(-1), indices.reshape(-1), (token_offsets + indices).reshape(-1), row_starts
    )


def select_topk(pre_acts: torch.Tensor, k: int) -> LatentSelection:
    """Select the ``k`` largest entries of each row of ``pre_acts`` ``[n, d_sae]``, clamped at 0."""
    top = pre_acts.topk(k, dim=-1, sorted=False)  # values and indices [n, k]
    return select_rows(torch.relu(top.values), top.indices, pre_acts.shape[-1])


def select_batch_topk(pre_acts: torch.Tensor, k: int) -> LatentSelection:
    """Select the ``k * n`` largest entries of all of ``pre_acts`` ``[n, d_sae]``, clamped at 0.

    The selection is the one ``saehooks.sae.batchtopk.batch_topk`` keeps, so a token may get any
    number of latents, none included.
    """
    n_tokens, d_sae = pre_acts.shape
    top = pre_acts.reshape(-1).topk(k * n_tokens, sorted=False)  # over [n * d_sae]
    positions, order = top.indices.sort()  # [k * n], token by token, latents ascending
    tokens = positions // d_sae  # [k * n]
    row_starts = torch.zeros(n_tokens + 1, dtype=torch.long, device=pre_acts.device)
    row_starts[1:] = torch.bincount(tokens, minlength=n_tokens).cumsum(0)
    values = torch.relu(top.values[order])  # [k * n]
    return LatentSelection(values, positions - tokens * d_sae, positions, row_starts)


def select_nonzero(acts: torch.Tensor) -> LatentSelection:
    """Select the non-zero entries of ``acts`` ``[n, d_sae]``, whose values keep their gradient.

    The gradient then reaches ``acts`` only where it is non-zero. It equals the dense product's
    gradient as long as no zero activation has a non-zero derivative with respect to a
    parameter, which holds for latents that TopK dropped or a ReLU clamped.
    """
    n_tokens, d_sae = acts.shape
    positions = acts.reshape(-1).nonzero().squeeze(-1)  # [nnz], ascending
    tokens = positions // d_sae  # [nnz]
    row_starts = torch.zeros(n_tokens + 1, dtype=torch.long, device=acts.device)
    row_starts[1:] = torch.bincount(tokens, minlength=n_tokens).cumsum(0)
    values = acts.reshape(-1)[positions]  # [nnz]
    return LatentSelection(values, positions - tokens * d_sae, positions, row_starts)


class SparseDecode(torch.autograd.Function):
    """``x_hat[n] = sum over the token's selected latents j of values_j * W_dec[j] + b_dec``.

    The latents come in CSR form, as the fields of ``LatentSelection``. The gradients equal
    those of the dense product ``acts @ W_dec + b_dec`` with ``acts`` zero outside the selection:
    for the selected values, for ``W_dec`` (non-zero only in selected rows) and for ``b_dec``.
    ``indices`` and ``row_starts`` get none.

    NOTE: tested on CPU only. PyTorch has CUDA kernels for embedding_bag, sampled_addmm and CSR
    products, but this path has not run on a GPU yet.
    """

    @staticmethod
    def forward(
        ctx: Any,
        values: torch.Tensor,
        indices: torch.Tensor,
        row_starts: torch.Tensor,
        W_dec: torch.Tensor,
        b_dec: torch.Tensor,
    ) -> torch.Tensor:
        # Each token's latents form one bag, so embedding_bag sums the weighted rows in one call.
        x_hat = F.embedding_bag(
            indices,
            W_dec,
            row_starts,
            mode="sum",
            per_sample_weights=values,
            include_last_offset=True,
        )  # [n, d_in]
        ctx.save_for_backward(values, indices, row_starts, W_dec)
        return x_hat + b_dec

    @staticmethod
    def backward(ctx: Any, grad_x_hat: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        values, indices, row_starts, W_dec = ctx.saved_tensors
        grad_b_dec = grad_x_hat.sum(dim=0) if ctx.needs_input_grad[4] else None  # [d_in]
        grad_values = grad_W_dec = None

        # sampled_addmm in PyTorch 2.13 rejects float16 and bfloat16 on CPU, so those run in
        # float32 and the gradients are cast back.
        compute_dtype = _compute_dtype(values.dtype)
        grad_x_hat = grad_x_hat.to(compute_dtype).contiguous()  # [n, d_in]
        size = (grad_x_hat.shape[0], W_dec.shape[0])
        acts = _csr(row_starts, indices, values.to(compute_dtype), size)  # [n, d_sae]

        if ctx.needs_input_grad[0]:
            # grad_acts = grad_x_hat @ W_dec.T, computed only where acts is stored.
            W_dec_t = W_dec.to(compute_dtype).T  # [d_in, d_sae]
            sampled = torch.sparse.sampled_addmm(acts, grad_x_hat, W_dec_t, beta=0.0)
            grad_values = sampled.values().to(values.dtype)  # [nnz]

        if ctx.needs_input_grad[3]:
            grad_W_dec = (acts.t() @ grad_x_hat).to(W_dec.dtype)  # [d_sae, d_in]

        return grad_values, None, None, grad_W_dec, grad_b_dec


class SelectedPreActs(torch.autograd.Function):
    """Pass through the selected pre-activations; send their gradients to the encoder sparsely.

    ``raw`` ``[nnz]`` are the entries of ``centred @ W_enc + b_enc`` at the selection's latents,
    computed without a graph. The backward gives the gradients of the dense encoder restricted
    to those entries: for ``centred`` ``[n, d_in]``, ``W_enc`` ``[d_in, d_sae]`` and ``b_enc``
    ``[d_sae]``. Each costs ``nnz * d_in`` multiply-adds instead of ``n * d_sae * d_in``.
    """

    @staticmethod
    def forward(
        ctx: Any,
        raw: torch.Tensor,
        centred: torch.Tensor,
        W_enc: torch.Tensor,
        b_enc: torch.Tensor,
        indices: torch.Tensor,
        row_starts: torch.Tensor,
    ) -> torch.Tensor:
        ctx.save_for_backward(centred, W_enc, indices, row_starts)
        ctx.b_enc_shape = b_enc.shape
        return raw.clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_raw: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        centred, W_enc, indices, row_starts = ctx.saved_tensors
        grad_centred = grad_W_enc = grad_b_enc = None
        compute_dtype = _compute_dtype(grad_raw.dtype)
        grad_raw = grad_raw.to(compute_dtype)  # [nnz]

        if ctx.needs_input_grad[1]:
            # grad_centred = grad_pre_acts @ W_enc.T: each token's W_enc columns, weighted.
            columns = W_enc.to(compute_dtype).t().contiguous()  # [d_sae, d_in]
            grad_centred = F.embedding_bag(
                indices,
                columns,
                row_starts,
                mode="sum",
                per_sample_weights=grad_raw,
                include_last_offset=True,
            ).to(centred.dtype)  # [n, d_in]

        if ctx.needs_input_grad[2]:
            grad_pre_acts = _csr(row_starts, indices, grad_raw, (centred.shape[0], W_enc.shape[1]))
            # grad_W_enc = centred.T @ grad_pre_acts, formed as (grad_pre_acts.T @ centred).T.
            product = grad_pre_acts.t() @ centred.to(compute_dtype)  # [d_sae, d_in]
            grad_W_enc = product.t().contiguous().to(W_enc.dtype)  # [d_in, d_sae]

        if ctx.needs_input_grad[3]:
            grad_b_enc = torch.zeros(ctx.b_enc_shape, dtype=compute_dtype, device=grad_raw.device)
            grad_b_enc = grad_b_enc.index_add_(0, indices, grad_raw).to(W_enc.dtype)  # [d_sae]

        # raw was computed without a graph, so it gets no gradient of its own.
        return None, grad_centred, grad_W_enc, grad_b_enc, None, None


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Return float32 for float16 and bfloat16, whose CSR products PyTorch 2.13 lacks on CPU."""
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def _csr(
    row_starts: torch.Tensor, indices: torch.Tensor, values: torch.Tensor, size: tuple[int, int]
) -> torch.Tensor:
    """Build a CSR tensor from a selection's fields without re-checking its order."""
    with warnings.catch_warnings():
        # PyTorch 2.13 warns, once per process, that its CSR support is in beta.
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        # The select_* functions build a valid CSR order, so the invariants are not checked.
        return torch.sparse_csr_tensor(
            row_starts, indices, values, size=size, check_invariants=False
        )


def selected_pre_acts(
    raw: torch.Tensor,
    centred: torch.Tensor,
    W_enc: torch.Tensor,
    b_enc: torch.Tensor,
    selection: LatentSelection,
) -> torch.Tensor:
    """Return the selected pre-activations ``raw`` ``[nnz]``, differentiable through the encoder."""
    indices, row_starts = selection.indices, selection.row_starts
    return SelectedPreActs.apply(raw, centred, W_enc, b_enc, indices, row_starts)


def decode_selection(
    selection: LatentSelection, W_dec: torch.Tensor, b_dec: torch.Tensor
) -> torch.Tensor:
    """Decode selected latents of ``n`` tokens into ``x_hat`` ``[n, d_in]``."""
    return SparseDecode.apply(
        selection.values, selection.indices, selection.row_starts, W_dec, b_dec
    )


def sparse_decode(
    values: torch.Tensor, indices: torch.Tensor, W_dec: torch.Tensor, b_dec: torch.Tensor
) -> torch.Tensor:
    """Decode from the selected latents: ``values`` and ``indices`` ``[..., k]`` -> ``[..., d_in]``.

    The result equals ``acts @ W_dec + b_dec``, where ``acts`` ``[..., d_sae]`` contains
    ``values`` at ``indices`` and zeros elsewhere, and so do the gradients.

    Args:
        values: latent activations at the selected positions, ``[..., k]``, in W_dec's dtype.
        indices: distinct latent indices per token in ``0 .. d_sae - 1``, ``[..., k]``.
        W_dec: decoder rows ``[d_sae, d_in]``.
        b_dec: decoder bias ``[d_in]``.

    Raises:
        ValueError: the shapes of ``values`` and ``indices`` differ, or a token selects a latent
            twice.
    """
    if values.shape != indices.shape:
        raise ValueError(
            f"values {tuple(values.shape)} and indices {tuple(indices.shape)} must have the same "
            "shape [..., k]"
        )
    leading, k = values.shape[:-1], values.shape[-1]
    selection = select_rows(values.reshape(-1, k), indices.reshape(-1, k), W_dec.shape[0])
    sorted_indices = selection.indices.reshape(-1, k)  # [n, k], ascending in each row
    if bool((sorted_indices[:, 1:] == sorted_indices[:, :-1]).any()):
        raise ValueError(
            "indices select the same latent twice for one token; pass distinct indices per "
            "token, as topk returns them"
        )
    x_hat = decode_selection(selection, W_dec, b_dec)  # [n, d_in]
    return x_hat.reshape(*leading, W_dec.shape[1])


DecodeMode = Literal["auto", "sparse", "dense"]
DECODE_MODES: tuple[str, ...] = ("auto", "sparse", "dense")


def check_decode_mode(mode: str) -> None:
    """Raise ``ValueError`` unless ``mode`` is one of ``DECODE_MODES``."""
    if mode not in DECODE_MODES:
        raise ValueError(f"decode_mode={mode!r} is invalid; use one of {DECODE_MODES}")


# Sparse decoding wins while k / d_sae is at most 1/32. Measured with
# bench/bench_sparse_decode.py (one thread, x86-64 with AVX-512, torch 2.13, other jobs loading
# both cores) at d_in=576 and d_sae=4608. On 4096 tokens one decoder forward and backward was
# 8 times as fast sparse as dense at k=32, 2.4 times at k=128, and equally fast at k=288
# (density 1/16). On 64 tokens the sparse pass still won at k=32 and k=128 and lost from k=288 on.
SPARSE_MAX_DENSITY = 1 / 32


def prefers_sparse_decode(k: int, d_sae: int) -> bool:
    """Return whether the sparse decoder is the faster one for a TopK SAE with these sizes."""
    return k <= SPARSE_MAX_DENSITY * d_sae
