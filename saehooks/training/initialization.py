"""Data-dependent initialisation: the input scale and b_dec from the first buffer of activations."""

from __future__ import annotations

import torch

# Rows per float64 block. Converting a whole first buffer (131,072 x 576 float32, 302 MB) to
# float64 at once, with the temporaries of one Weiszfeld step, took about 1.8 GB more memory.
CHUNK_ROWS = 16_384


def normalization_scale(x: torch.Tensor) -> float:
    """Factor s with E||s x|| = sqrt(d_in), estimated on ``x`` of shape ``[n, d_in]``.

    The norms are summed in float64, block by block, so no float64 copy of all of ``x`` exists.

    Raises:
        ValueError: ``x`` contains NaN or infinite values, or all of it is zero.
    """
    bad_rows = sum(int((~torch.isfinite(block)).any(dim=-1).sum()) for block in row_blocks(x))
    if bad_rows:
        raise ValueError(
            f"{bad_rows} of {x.shape[0]} activations contain NaN or infinite values, so they "
            "cannot be normalised; the host model overflowed (try --host-dtype float32) or the "
            "stored activations are corrupted"
        )
    norm_sum = sum(block.double().norm(dim=-1).sum().item() for block in row_blocks(x))
    mean_norm = norm_sum / x.shape[0] if x.shape[0] else 0.0
    if not mean_norm > 0:
        raise ValueError("cannot normalise activations whose mean norm is 0")
    return x.shape[-1] ** 0.5 / mean_norm


@torch.no_grad()
def geometric_median(x: torch.Tensor, max_iter: int = 100, tol: float = 1e-6) -> torch.Tensor:
    """Point minimising the summed Euclidean distance to the rows of ``x`` ``[n, d]``, ``-> [d]``.

    Weiszfeld's algorithm (Weiszfeld, 1937), started at the mean, in float64. Distances are floored
    at 1e-8 so an iterate landing on a data point does not divide by zero. Each step runs over
    blocks of ``CHUNK_ROWS`` rows, so memory grows with the block, not with ``n``.
    """
    total = torch.zeros(x.shape[-1], dtype=torch.float64, device=x.device)
    for block in row_blocks(x):
        total += block.double().sum(dim=0)
    median = total / x.shape[0]
    for _ in range(max_iter):
        weighted_sum = torch.zeros_like(median)  # [d]
        weight_total = torch.zeros((), dtype=torch.float64, device=x.device)
        for block in row_blocks(x):
            points = block.double()  # [rows, d]
            weights = 1.0 / (points - median).norm(dim=1).clamp_min(1e-8)  # [rows]
            weighted_sum += weights @ points
            weight_total += weights.sum()
        updated = weighted_sum / weight_total
        shift = (updated - median).norm().item()
        median = updated
        if shift <= tol * max(1.0, median.norm().item()):
            break
    return median.to(x.dtype)


def row_blocks(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Views of ``x`` ``[n, d]`` by blocks of ``CHUNK_ROWS`` rows."""
    return x.split(CHUNK_ROWS)
