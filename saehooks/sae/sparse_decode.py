"""Decoding from the k selected latents of each token, without the dense ``[n, d_sae]`` product.

A TopK SAE keeps ``k`` of ``d_sae`` latents per token, so ``acts @ W_dec`` multiplies mostly
zeros. ``sparse_decode`` sums the ``k`` selected decoder rows instead, and its backward touches
only those rows too: ``n * k * d_in`` multiply-adds per pass instead of ``n * d_sae * d_in``.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import torch
from torch.nn import functional as F


class SparseDecode(torch.autograd.Function):
    """``x_hat[n] = sum_j values[n, j] * W_dec[indices[n, j]] + b_dec`` on flat ``[n, k]`` inputs.

    The gradients equal those of the dense product ``acts @ W_dec + b_dec`` with ``acts`` zero
    outside ``indices``: for the selected values, for ``W_dec`` (non-zero only in selected rows)
    and for ``b_dec``. ``indices`` gets no gradient.
    """

    @staticmethod
    def forward(
        ctx: Any,
        values: torch.Tensor,
        indices: torch.Tensor,
        W_dec: torch.Tensor,
        b_dec: torch.Tensor,
    ) -> torch.Tensor:
        # Each row of ``indices`` is one bag, so embedding_bag sums the weighted rows in one call.
        x_hat = F.embedding_bag(indices, W_dec, per_sample_weights=values, mode="sum")  # [n, d_in]
        ctx.save_for_backward(values, indices, W_dec)
        return x_hat + b_dec

    @staticmethod
    def backward(ctx: Any, grad_x_hat: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        values, indices, W_dec = ctx.saved_tensors
        grad_x_hat = grad_x_hat.contiguous()  # [n, d_in]
        grad_values = grad_W_dec = grad_b_dec = None
        n_tokens, k = values.shape
        # acts [n, d_sae] in CSR form: row n contains values[n] at the sorted, distinct indices[n].
        row_starts = torch.arange(0, n_tokens * k + 1, k, device=values.device)  # [n + 1]
        with warnings.catch_warnings():
            # PyTorch 2.13 warns, once per process, that its CSR support is in beta.
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            acts = torch.sparse_csr_tensor(
                row_starts,
                indices.reshape(-1),
                values.reshape(-1),
                size=(n_tokens, W_dec.shape[0]),
                check_invariants=False,  # sparse_decode sorted the indices and checked them
            )

        if ctx.needs_input_grad[0]:
            # grad_acts = grad_x_hat @ W_dec.T, computed only where acts is stored.
            sampled = torch.sparse.sampled_addmm(acts, grad_x_hat, W_dec.T, beta=0.0)
            grad_values = sampled.values().reshape(n_tokens, k)

        if ctx.needs_input_grad[2]:
            grad_W_dec = acts.t() @ grad_x_hat  # [d_sae, d_in], zero outside selected rows

        if ctx.needs_input_grad[3]:
            grad_b_dec = grad_x_hat.sum(dim=0)  # [d_in]

        return grad_values, None, grad_W_dec, grad_b_dec


def sparse_decode(
    values: torch.Tensor, indices: torch.Tensor, W_dec: torch.Tensor, b_dec: torch.Tensor
) -> torch.Tensor:
    """Decode from the selected latents: ``values`` and ``indices`` ``[..., k]`` -> ``[..., d_in]``.

    The result equals ``acts @ W_dec + b_dec``, where ``acts`` ``[..., d_sae]`` contains ``values``
    at ``indices`` and zeros elsewhere, and so do the gradients.

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
    # The backward's CSR matrix needs sorted column indices in each row.
    indices, order = indices.reshape(-1, k).long().sort(dim=-1)  # [n, k]
    values = values.reshape(-1, k).gather(-1, order)  # [n, k]
    if bool((indices[:, 1:] == indices[:, :-1]).any()):
        raise ValueError(
            "indices select the same latent twice for one token; pass distinct indices per "
            "token, as topk returns them"
        )
    x_hat = SparseDecode.apply(values, indices, W_dec, b_dec)  # [n, d_in]
    return x_hat.reshape(*leading, W_dec.shape[1])


DecodeMode = Literal["auto", "sparse", "dense"]
DECODE_MODES: tuple[str, ...] = ("auto", "sparse", "dense")


def check_decode_mode(mode: str) -> None:
    """Raise ``ValueError`` unless ``mode`` is one of ``DECODE_MODES``."""
    if mode not in DECODE_MODES:
        raise ValueError(f"decode_mode={mode!r} is invalid; use one of {DECODE_MODES}")


# Sparse decoding wins while k / d_sae is at most 1/32. Measured with
# bench/bench_sparse_decode.py (one thread, x86-64 with AVX-512, torch 2.13, another job loading
# both cores) at d_in=576 and d_sae=4608. One decoder forward and backward on 4096 tokens took
# 0.10 s sparse against 0.77 s dense at k=32, 0.30 s against 0.72 s at k=128, and about the same
# at k=288 (density 1/16). On 64 tokens the sparse pass still won at k=32 and k=128 and lost
# from k=288 on.
SPARSE_MAX_DENSITY = 1 / 32


def prefers_sparse_decode(k: int, d_sae: int) -> bool:
    """Return whether the sparse decoder is the faster one for a TopK SAE with these sizes."""
    return k <= SPARSE_MAX_DENSITY * d_sae
