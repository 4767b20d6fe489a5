"""JumpReLU: a learned per-latent threshold, trained through straight-through estimators.

Rajamanoharan et al. (2024), "Jumping Ahead: Improving Reconstruction Fidelity with JumpReLU
Sparse Autoencoders", sections 3 and 4. The activation is ``z * H(z - threshold)``, with H the
Heaviside step. H has no useful derivative, so the backward pass replaces the derivative with
respect to the threshold by a kernel density estimate with a rectangle kernel of width
``bandwidth`` (their equations 11 and 12):

- d/d threshold of JumpReLU(z):  -(threshold / bandwidth) * K((z - threshold) / bandwidth)
- d/d threshold of H(z - threshold):  -(1 / bandwidth) * K((z - threshold) / bandwidth)

where K(u) = 1 for -1/2 < u < 1/2 and 0 elsewhere. The kernel is evaluated at the
pre-activations z, so a latent just below its threshold, whose activation is 0, still pushes on
it. Gradients with respect to z are the ordinary ones of ``z * H(z - threshold)``; the step
function passes none to z, as in the paper.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from saehooks.sae.config import SAEConfig
from saehooks.sae.sparse_autoencoder import SparseAutoencoder


def rectangle(u: torch.Tensor) -> torch.Tensor:
    """Evaluate the rectangle kernel: 1 where -1/2 < u < 1/2, else 0, in the dtype of ``u``."""
    return ((u > -0.5) & (u < 0.5)).to(u.dtype)


def _threshold_kernel(
    pre_acts: torch.Tensor, threshold: torch.Tensor, bandwidth: float
) -> torch.Tensor:
    """Compute K((z - threshold) / bandwidth) / bandwidth in float32, ``[n, d_sae]``."""
    u = (pre_acts.float() - threshold.float()) / bandwidth  # [n, d_sae]
    return rectangle(u) / bandwidth


class JumpReLUFunction(torch.autograd.Function):
    """``relu(z) * H(z - threshold)`` with the straight-through threshold gradient.

    The ReLU only matters for a negative threshold: then the output stays non-negative, and for
    every threshold >= 0 the value equals the paper's ``z * H(z - threshold)``.
    """

    @staticmethod
    def forward(
        ctx: Any, pre_acts: torch.Tensor, threshold: torch.Tensor, bandwidth: float
    ) -> torch.Tensor:
        keep = (pre_acts.float() > threshold) & (pre_acts > 0)  # [n, d_sae]
        ctx.save_for_backward(pre_acts, threshold, keep)
        ctx.bandwidth = bandwidth
        return pre_acts * keep.to(pre_acts.dtype)

    @staticmethod
    def backward(ctx: Any, grad_acts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        pre_acts, threshold, keep = ctx.saved_tensors
        grad_pre_acts = grad_acts * keep.to(grad_acts.dtype)
        kernel = _threshold_kernel(pre_acts, threshold, ctx.bandwidth)  # [n, d_sae]
        grad_threshold = -(threshold * kernel * grad_acts.float()).sum(dim=0)  # [d_sae]
        return grad_pre_acts, grad_threshold.to(threshold.dtype), None


class StepFunction(torch.autograd.Function):
    """Heaviside ``H(z - threshold)`` with the straight-through threshold gradient."""

    @staticmethod
    def forward(
        ctx: Any, pre_acts: torch.Tensor, threshold: torch.Tensor, bandwidth: float
    ) -> torch.Tensor:
        ctx.save_for_backward(pre_acts, threshold)
        ctx.bandwidth = bandwidth
        return (pre_acts.float() > threshold).float()

    @staticmethod
    def backward(ctx: Any, grad_step: torch.Tensor) -> tuple[None, torch.Tensor, None]:
        pre_acts, threshold = ctx.saved_tensors
        kernel = _threshold_kernel(pre_acts, threshold, ctx.bandwidth)  # [n, d_sae]
        grad_threshold = -(kernel * grad_step.float()).sum(dim=0)  # [d_sae]
        return None, grad_threshold.to(threshold.dtype), None


def jumprelu(pre_acts: torch.Tensor, threshold: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """JumpReLU of ``pre_acts`` ``[n, d_sae]`` with per-latent ``threshold`` ``[d_sae]``."""
    acts: torch.Tensor = JumpReLUFunction.apply(pre_acts, threshold, bandwidth)
    return acts


def step(pre_acts: torch.Tensor, threshold: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """H(pre_acts - threshold) in float32, ``[n, d_sae]``; its sum over latents is the L0."""
    fired: torch.Tensor = StepFunction.apply(pre_acts, threshold, bandwidth)
    return fired


class JumpReLUSAE(SparseAutoencoder):
    """An SAE whose nonlinearity is JumpReLU with a learned threshold per latent.

    ``threshold`` ``[d_sae]`` is a parameter of its own and stays float32 whatever ``cfg.dtype``
    is: Adam's steps on a threshold near 1 are far below bfloat16's resolution there (2**-7),
    so a bfloat16 threshold would never move. Casting the whole module with ``.to(dtype)``
    casts the threshold as well.
    """

    def __init__(self, cfg: SAEConfig, device: torch.device | str | None = None) -> None:
        super().__init__(cfg, device)
        self.threshold = nn.Parameter(
            torch.full((cfg.d_sae,), cfg.jumprelu_threshold, device=device, dtype=torch.float32)
        )

    def activation(self, pre_acts: torch.Tensor) -> torch.Tensor:
        return jumprelu(pre_acts, self.threshold, self.cfg.jumprelu_bandwidth)
