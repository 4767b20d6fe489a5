"""Per-latent parameter access, edits and Adam-state resets shared by the remedies."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from saehooks.sae.sparse_autoencoder import SparseAutoencoder


class LatentParameters(NamedTuple):
    """The parameters through which remedies read and edit single latents."""

    W_enc: nn.Parameter
    """Encoder, ``[d_in, d_sae]``: latent j's encoder row is the column ``W_enc[:, j]``."""
    b_enc: nn.Parameter
    """Encoder bias, ``[d_sae]``."""
    W_dec: nn.Parameter
    """Decoder, ``[d_sae, d_in]``: latent j's decoder row is ``W_dec[j]``."""
    b_dec: nn.Parameter
    """Decoder bias, ``[d_in]``, subtracted from the input before encoding when the SAE's config
    says so."""


def latent_parameters(sae: SparseAutoencoder, remedy: str) -> LatentParameters:
    """Check that ``sae`` has the linear encoder and decoder that ``remedy`` edits or reads.

    Raises ValueError naming the missing or misshapen parameter: architectures without a single
    ``b_enc`` (a gated SAE's separate gate and magnitude biases) or without one decoder row per
    latent (a mixture of experts) are outside what these remedies know how to edit.
    """
    d_in, d_sae = sae.cfg.d_in, sae.cfg.d_sae
    expected = {
        "W_enc": (d_in, d_sae),
        "b_enc": (d_sae,),
        "W_dec": (d_sae, d_in),
        "b_dec": (d_in,),
    }
    found: dict[str, nn.Parameter] = {}
    for name, shape in expected.items():
        parameter = getattr(sae, name, None)
        if not isinstance(parameter, nn.Parameter) or tuple(parameter.shape) != shape:
            got = "missing" if parameter is None else f"of shape {tuple(parameter.shape)}"
            raise ValueError(
                f"remedy {remedy!r} needs a parameter {name} of shape {shape}, which "
                f"{type(sae).__name__} (architecture {sae.cfg.architecture!r}) has {got}; "
                f"use remedy 'none' for this architecture"
            )
        found[name] = parameter
    return LatentParameters(**found)


def encoder_input(sae: SparseAutoencoder, x: torch.Tensor) -> torch.Tensor:
    """What the encoder multiplies: ``x - b_dec`` when the SAE centres its input, else ``x``.

    b_dec is detached, so a loss built on the result sends it no gradient.
    """
    if getattr(sae.cfg, "apply_b_dec_to_input", True):
        return x - sae.b_dec.detach()
    return x


@torch.no_grad()
def reset_adam_moments(
    optimizer: torch.optim.Optimizer, parameter: nn.Parameter, index: torch.Tensor, dim: int
) -> None:
    """Zero Adam's running moments of ``parameter`` at ``index`` along ``dim``, nothing else.

    The step count stays, so the bias correction of the zeroed entries is that of a late step:
    their next update is large, which is why the resampling recipes warm the learning rate up
    again afterwards. Does nothing before the optimiser's first step, when no state exists.
    """
    state = optimizer.state.get(parameter)
    if not state:
        return
    for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
        moment = state.get(key)
        if isinstance(moment, torch.Tensor) and moment.shape == parameter.shape:
            moment.index_fill_(dim, index.to(moment.device), 0.0)


class RowNorms(NamedTuple):
    """Norms that rewritten latents get."""

    encoder: float
    """Norm of each new encoder row ``W_enc[:, j]``."""
    decoder: float
    """Norm of each new decoder row ``W_dec[j]``."""


@torch.no_grad()
def rewrite_latents(
    params: LatentParameters,
    optimizer: torch.optim.Optimizer,
    latents: torch.Tensor,
    directions: torch.Tensor,
    norms: RowNorms,
) -> None:
    """Point ``latents`` along unit ``directions`` ``[n, d_in]`` and reset their Adam moments.

    Each latent's decoder row becomes its direction times ``norms.decoder``, its encoder row the
    same direction times ``norms.encoder``, and its encoder bias 0. Only those rows, columns and
    entries change.
    """
    latents = latents.to(params.W_dec.device)
    directions = directions.to(params.W_dec.device, params.W_dec.dtype)  # [n, d_in]
    params.W_dec[latents] = directions * norms.decoder
    params.W_enc[:, latents] = directions.T * norms.encoder
    params.b_enc[latents] = 0.0
    reset_adam_moments(optimizer, params.W_dec, latents, dim=0)
    reset_adam_moments(optimizer, params.W_enc, latents, dim=1)
    reset_adam_moments(optimizer, params.b_enc, latents, dim=0)


def unit_rows(vectors: torch.Tensor) -> torch.Tensor:
    """Rows of ``vectors`` ``[n, d]`` scaled to unit norm; all-zero rows stay zero."""
    return vectors / vectors.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def mean_alive_norm(weight: torch.Tensor, dead: torch.Tensor, dim: int) -> float:
    """Mean norm, taken along ``dim``, of the latents not in ``dead`` ``[d_sae]`` bool.

    ``dim=0`` gives encoder rows of ``W_enc`` ``[d_in, d_sae]``, ``dim=1`` decoder rows of
    ``W_dec`` ``[d_sae, d_in]``. Falls back to the mean over every latent when all are dead.
    """
    norms = weight.detach().norm(dim=dim)  # [d_sae]
    alive = ~dead.to(norms.device)
    return float(norms[alive].mean() if alive.any() else norms.mean())
