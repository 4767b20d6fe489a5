"""Remedies that add an auxiliary loss through which dead latents learn: ghost grads and aux-k."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import torch

from saehooks.resampling.config import RemedyConfig
from saehooks.resampling.dead import DeadLatentLog, attach_frequency
from saehooks.resampling.latents import LatentParameters, encoder_input, latent_parameters
from saehooks.resampling.sample import ResidualTracker
from saehooks.trackers.base import PenaltyTracker

if TYPE_CHECKING:
    from saehooks.training.trainer import Trainer

GHOST_EXP_LIMIT = 20.0
"""Ghost grads exponentiates a token's pre-activations as they are while their maximum lies in
``[-GHOST_EXP_LIMIT, GHOST_EXP_LIMIT]``; see ``ghost_grads_terms``."""
AUXK_COEFFICIENT = 1.0 / 32.0
"""Weight of the aux-k loss (Gao et al., 2024, "Scaling and evaluating sparse autoencoders",
appendix A.2)."""


class DeadPenalty(ResidualTracker, PenaltyTracker):
    """An auxiliary loss on the dead latents named in ``dead_latents``, read at ``hook_x_hat``.

    The owning remedy sets ``dead_latents`` (indices) after each step; the next forward pass
    uses them. With no dead latents the loss is a constant 0 with no graph, so it sends no
    gradient anywhere and cannot produce NaN.
    """

    def __init__(self, coefficient: float) -> None:
        super().__init__(coefficient=coefficient)
        self.dead_latents = torch.zeros(0, dtype=torch.long)

    def observe_residual(self, x: torch.Tensor, x_hat: torch.Tensor) -> None:
        dead = self.dead_latents.to(x.device)
        if dead.numel() == 0:
            self.loss = torch.zeros((), device=x.device, dtype=x_hat.dtype)
            return
        sae = self.sae
        params = LatentParameters(sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec)
        # Centring with a detached b_dec keeps the gradient of this loss on the dead latents.
        pre_acts = encoder_input(sae, x) @ params.W_enc[:, dead] + params.b_enc[dead]  # [n, n_dead]
        self.loss = self.dead_loss(pre_acts, params.W_dec[dead], x, x_hat)

    def dead_loss(
        self, pre_acts: torch.Tensor, W_dec_dead: torch.Tensor, x: torch.Tensor, x_hat: torch.Tensor
    ) -> torch.Tensor:
        raise NotImplementedError


class GhostTerms(NamedTuple):
    """The pieces of the ghost-grads loss for one batch."""

    acts: torch.Tensor
    """Ghost activations ``exp(pre_acts)`` of the dead latents, ``[n, n_dead]``."""
    reconstruction: torch.Tensor
    """Ghost reconstruction rescaled to half the residual's norm per token, ``[n, d_in]``."""
    loss: torch.Tensor
    """Ghost MSE rescaled to the value of the main MSE, a scalar with its graph."""


def ghost_grads_terms(
    pre_acts: torch.Tensor, W_dec_dead: torch.Tensor, x: torch.Tensor, x_hat: torch.Tensor
) -> GhostTerms:
    """Compute ghost grads (Anthropic, "Circuits Updates - January 2024", ghost grads note).

    ``pre_acts`` ``[n, n_dead]`` are the dead latents' pre-activations, ``W_dec_dead``
    ``[n_dead, d_in]`` their decoder rows. The ghost activations ``exp(pre_acts)`` are decoded
    without b_dec. A detached factor rescales each token's ghost reconstruction to half the norm
    of its residual ``x - x_hat``. A second detached factor rescales its MSE against the
    detached residual to the value of the main MSE. Both MSEs sum over ``d_in`` and average over
    tokens, as the trainer's does.

    A token whose largest dead pre-activation lies outside ``[-GHOST_EXP_LIMIT,
    GHOST_EXP_LIMIT]`` has all its pre-activations shifted by the same amount, so that the
    largest lands on the nearer end. The detached per-token rescaling absorbs the shift, so the
    loss and its gradients are unchanged, and float32 neither overflows in ``exp`` or in the
    norm nor underflows to 0. Zero norms are floored, so a perfect reconstruction gives a loss
    of 0, not NaN.
    """
    residual = (x - x_hat).detach()  # [n, d_in]
    largest = pre_acts.detach().max(dim=-1, keepdim=True).values  # [n, 1]
    shift = largest - largest.clamp(-GHOST_EXP_LIMIT, GHOST_EXP_LIMIT)  # [n, 1]
    acts = torch.exp(pre_acts - shift)  # [n, n_dead]
    decoded = acts @ W_dec_dead  # [n, d_in], no b_dec
    residual_norm = residual.norm(dim=-1, keepdim=True)  # [n, 1]
    decoded_norm = decoded.detach().norm(dim=-1, keepdim=True).clamp_min(1e-12)  # [n, 1]
    reconstruction = decoded * (residual_norm / (2.0 * decoded_norm))  # [n, d_in]

    ghost_mse = (reconstruction - residual).pow(2).sum(dim=-1).mean()
    main_mse = residual.pow(2).sum(dim=-1).mean()
    scale = main_mse / ghost_mse.detach().clamp_min(1e-12)
    return GhostTerms(acts=acts, reconstruction=reconstruction, loss=ghost_mse * scale)


class GhostGradsLoss(DeadPenalty):
    """Ghost grads as a penalty tracker; see ``ghost_grads_terms``."""

    def dead_loss(
        self, pre_acts: torch.Tensor, W_dec_dead: torch.Tensor, x: torch.Tensor, x_hat: torch.Tensor
    ) -> torch.Tensor:
        return ghost_grads_terms(pre_acts, W_dec_dead, x, x_hat).loss


class AuxKTerms(NamedTuple):
    """The pieces of the aux-k loss for one batch."""

    acts: torch.Tensor
    """Activations of the dead latents: their top ``k_aux`` pre-activations per token after
    ReLU, zero elsewhere, ``[n, n_dead]``."""
    reconstruction: torch.Tensor
    """``acts @ W_dec_dead``, without b_dec, ``[n, d_in]``."""
    loss: torch.Tensor
    """Squared error against the detached residual, summed over ``d_in``, mean over tokens."""


def auxk_terms(
    pre_acts: torch.Tensor,
    W_dec_dead: torch.Tensor,
    x: torch.Tensor,
    x_hat: torch.Tensor,
    k_aux: int,
) -> AuxKTerms:
    """Compute the aux-k loss (Gao et al., 2024, "Scaling and evaluating sparse autoencoders",
    appendix A.2).

    The top ``k_aux`` dead pre-activations ``[n, n_dead]`` of each token (all of them when fewer
    are dead), after ReLU, form ``z``. They reconstruct the detached residual ``e = x - x_hat`` as
    ``e_hat = W_dec^T z``, without b_dec because ``x_hat`` already contains it, and the loss is
    ``||e - e_hat||^2``.
    """
    residual = (x - x_hat).detach()  # [n, d_in]
    top = pre_acts.topk(min(k_aux, pre_acts.shape[-1]), dim=-1)  # [n, k]
    acts = torch.zeros_like(pre_acts).scatter(-1, top.indices, torch.relu(top.values))
    reconstruction = acts @ W_dec_dead  # [n, d_in]
    loss = (reconstruction - residual).pow(2).sum(dim=-1).mean()
    return AuxKTerms(acts=acts, reconstruction=reconstruction, loss=loss)


class AuxKLoss(DeadPenalty):
    """The aux-k loss as a penalty tracker; see ``auxk_terms``."""

    def __init__(self, coefficient: float, k_aux: int) -> None:
        super().__init__(coefficient)
        self.k_aux = k_aux

    def dead_loss(
        self, pre_acts: torch.Tensor, W_dec_dead: torch.Tensor, x: torch.Tensor, x_hat: torch.Tensor
    ) -> torch.Tensor:
        return auxk_terms(pre_acts, W_dec_dead, x, x_hat, self.k_aux).loss


class AuxiliaryLossRemedy:
    """Attach a ``DeadPenalty`` and tell it, after every step, which latents are dead."""

    name = ""

    def __init__(self, cfg: RemedyConfig) -> None:
        self.cfg = cfg

    def make_penalty(self) -> DeadPenalty:
        raise NotImplementedError

    def attach(self, trainer: Trainer) -> None:
        latent_parameters(trainer.sae, self.name)
        self.frequency = attach_frequency(trainer, self.cfg)
        self.penalty = self.make_penalty()
        self.penalty.attach(trainer.sae, self.name)
        self.log = DeadLatentLog(trainer.sae.cfg.d_sae, trainer.device)

    def after_step(self, trainer: Trainer) -> dict[str, float]:
        dead = self.frequency.dead_mask()  # [d_sae] bool
        self.penalty.dead_latents = dead.nonzero().flatten()
        self.log.mark(dead, trainer.tokens_seen)
        return self.log.metrics(trainer.fires, trainer.tokens_seen, dead)


class GhostGrads(AuxiliaryLossRemedy):
    """Ghost grads on the dead latents, weighted by ``aux_coefficient`` (default 1)."""

    name = "ghost_grads"

    def make_penalty(self) -> DeadPenalty:
        coefficient = 1.0 if self.cfg.aux_coefficient is None else self.cfg.aux_coefficient
        return GhostGradsLoss(coefficient)


class AuxK(AuxiliaryLossRemedy):
    """The aux-k loss, weighted by ``aux_coefficient`` (default 1/32, as in Gao et al., 2024)."""

    name = "auxk"

    def attach(self, trainer: Trainer) -> None:
        if self.cfg.k_aux > trainer.sae.cfg.d_sae:
            raise ValueError(
                f"k_aux={self.cfg.k_aux} exceeds d_sae={trainer.sae.cfg.d_sae}; lower k_aux"
            )
        super().attach(trainer)

    def make_penalty(self) -> DeadPenalty:
        coefficient = (
            AUXK_COEFFICIENT if self.cfg.aux_coefficient is None else self.cfg.aux_coefficient
        )
        return AuxKLoss(coefficient, self.cfg.k_aux)
