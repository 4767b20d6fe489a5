"""Data-dependent initialisation: the input scale and b_dec from the first buffer of activations."""

from __future__ import annotations

import torch


def normalization_scale(x: torch.Tensor) -> float:
    """Factor s with E||s x|| = sqrt(d_in), estimated on ``x`` of shape ``[n, d_in]``.

    Raises:
        ValueError: ``x`` contains NaN or infinite values, or all of it is zero.
    """
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        bad_rows = int((~finite).any(dim=-1).sum())
        raise ValueError(
            f"{bad_rows} of {x.shape[0]} activations contain NaN or infinite values, so they "
            "cannot be normalised; the host model overflowed (try --host-dtype float32) or the "
            "stored activations are corrupted"
        )
    mean_norm = x.double().norm(dim=-1).mean().item()
    if not mean_norm > 0:
        raise ValueError("cannot normalise activations whose mean norm is 0")
    return x.shape[-1] ** 0.5 / mean_norm


@torch.no_grad()
def geometric_median(x: torch.Tensor, max_iter: int = 100, tol: float = 1e-6) -> torch.Tensor:
    """Point minimising the summed Euclidean distance to the rows of ``x`` ``[n, d]``, ``-> [d]``.

    Weiszfeld's algorithm (Weiszfeld, 1937), started at the mean, in float64. Distances are floored
    at 1e-8 so an iterate landing on a data point does not divide by zero.
    """
    points = x.double()
    median = points.mean(dim=0)
    for _ in range(max_iter):
        weights = 1.0 / (points - median).norm(dim=1).clamp_min(1e-8)  # [n]
        updated = (weights[:, None] * points).sum(dim=0) / weights.sum()
        shift = (updated - median).norm().item()
        median = updated
        if shift <= tol * max(1.0, median.norm().item()):
            break
    return median.to(x.dtype)
