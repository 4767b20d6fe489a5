"""Remedies that rewrite dead latents' weights at scheduled steps."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch

from saehooks.resampling.config import RemedyConfig
from saehooks.resampling.dead import DeadLatentLog, attach_frequency
from saehooks.resampling.latents import (
    LatentParameters,
    RowNorms,
    encoder_input,
    latent_parameters,
    mean_alive_norm,
    reset_adam_moments,
    rewrite_latents,
    unit_rows,
)
from saehooks.resampling.sample import RecentSample
from saehooks.training.objectives import uses_unit_norm_decoder

if TYPE_CHECKING:
    from saehooks.training.trainer import Trainer

logger = logging.getLogger(__name__)

ENCODER_SCALE = 0.2
"""New encoder rows get this times the mean encoder-row norm of the alive latents (Bricken et al.,
2023, "Towards Monosemanticity", appendix on neuron resampling)."""


BOOST_CHUNK_LATENTS = 1024
"""Latents whose margins ``BiasBoost`` computes at once, to bound memory at ``[m, 1024]``."""


class ScheduledRewrite:
    """Every ``resample_interval_steps`` steps, rewrite dead latents through ``edit``.

    Eligible are the latents the frequency tracker calls dead, except those edited less than
    ``dead_window_tokens`` tokens ago, which have not yet had a full window to fire. At most
    ``resample_max_latents`` of them are drawn at random (seeded by the training seed) per event.
    Subclasses implement ``edit``, set ``rewarms_lr`` to choose whether an event re-warms the
    learning rate, and set ``needs_thresholds`` when ``edit`` reads the sample's thresholds.
    """

    name = ""
    rewarms_lr = True
    needs_thresholds = False

    def __init__(self, cfg: RemedyConfig) -> None:
        self.cfg = cfg

    def attach(self, trainer: Trainer) -> None:
        self.params: LatentParameters = latent_parameters(trainer.sae, self.name)
        self.frequency = attach_frequency(trainer, self.cfg)
        self.sample = RecentSample(
            self.cfg.resample_sample_tokens, trainer.sae.cfg.d_in, self.needs_thresholds
        )
        self.sample.to(trainer.device).attach(trainer.sae, f"{self.name}_sample")
        self.log = DeadLatentLog(trainer.sae.cfg.d_sae, trainer.device)
        self.generator = torch.Generator().manual_seed(trainer.cfg.seed)

    def after_step(self, trainer: Trainer) -> dict[str, float]:
        dead = self.frequency.dead_mask()  # [d_sae] bool
        self.log.mark(dead, trainer.tokens_seen)
        edited = 0
        if trainer.step_count % self.cfg.resample_interval_steps == 0:
            recent = self.log.edited_within(trainer.cfg.dead_window_tokens, trainer.tokens_seen)
            latents = self._choose(dead & ~recent)
            if latents.numel() > 0:
                edited = self.edit(trainer, latents, dead)
            if edited > 0:
                self.log.record_edit(latents[:edited], trainer.tokens_seen)
                if self.rewarms_lr and self.cfg.resample_rewarm_steps > 0:
                    trainer.rewarm_lr(self.cfg.resample_rewarm_steps)
                logger.info(
                    "step %d: %s edited %d of %d dead latents",
                    trainer.step_count,
                    self.name,
                    edited,
                    int(dead.sum()),
                )
        metrics = self.log.metrics(trainer.fires, trainer.tokens_seen, dead)
        metrics["dead/resampled"] = float(edited)
        return metrics

    def _choose(self, eligible: torch.Tensor) -> torch.Tensor:
        """Indices of at most ``resample_max_latents`` eligible latents, sorted."""
        candidates = eligible.nonzero().flatten().cpu()
        limit = self.cfg.resample_max_latents
        if limit is not None and candidates.numel() > limit:
            order = torch.randperm(candidates.numel(), generator=self.generator)[:limit]
            candidates = candidates[order].sort().values
        return candidates

    def row_norms(self, trainer: Trainer, dead: torch.Tensor) -> RowNorms:
        """Norms for rewritten rows, scaled as ``AnthropicResampling`` describes."""
        decoder = 1.0
        if not uses_unit_norm_decoder(trainer.sae):
            decoder = mean_alive_norm(self.params.W_dec, dead, dim=1)
        encoder = ENCODER_SCALE * mean_alive_norm(self.params.W_enc, dead, dim=0)
        return RowNorms(encoder=encoder, decoder=decoder)

    def edit(self, trainer: Trainer, latents: torch.Tensor, dead: torch.Tensor) -> int:
        """Rewrite the first n of ``latents`` and return n.

        n is less than ``len(latents)`` when the remedy runs out of directions. ``dead``
        ``[d_sae]`` bool marks every latent found dead this step, edited or not.
        """
        raise NotImplementedError


class AnthropicResampling(ScheduledRewrite):
    """Resample dead latents towards inputs the SAE reconstructs badly.

    Follows Bricken et al. (2023), "Towards Monosemanticity", appendix on neuron resampling.
    Recent inputs are drawn with probability proportional to the square of their loss
    ``||x - x_hat||^2``. A dead latent's decoder row becomes its drawn input at unit norm, and
    its encoder row the same direction times 0.2 times the mean encoder-row norm of alive
    latents. Its encoder bias becomes 0, Adam's moments of those entries are reset, and the
    learning rate then warms up again.

    The paper's decoder rows are all held at unit norm, so a unit-norm row is an ordinary one
    there. For an SAE that trains without that constraint (ReLU with the decoder-norm-weighted
    L1 penalty), the new decoder row gets the mean norm of the alive decoder rows instead. A
    unit-norm row would pay many times the others' L1 penalty per unit of activation: about 20
    times on SmolLM2 in ``docs/dead-latents.md``, where such latents died again within one
    dead window.

    The drawn input is taken as the encoder sees it (minus b_dec when the SAE centres its
    input), so that the new encoder row lines up with what it multiplies.

    NOTE: the losses are not recomputed with the weights of the event. They are those recorded
    when the inputs passed through training, at most ``resample_sample_tokens`` tokens earlier,
    which needs no extra forward pass.
    """

    name = "anthropic"

    def edit(self, trainer: Trainer, latents: torch.Tensor, dead: torch.Tensor) -> int:
        sample = self.sample.sample()
        if sample.inputs.shape[0] == 0:
            return 0
        losses = sample.residuals.pow(2).sum(dim=-1)  # [m]
        drawn = draw_proportional(losses.pow(2).cpu(), latents.numel(), self.generator)
        directions = unit_rows(
            encoder_input(trainer.sae, sample.inputs[drawn.to(sample.inputs.device)])
        )
        norms = self.row_norms(trainer, dead)
        rewrite_latents(self.params, trainer.optimizer, latents, directions, norms)
        return latents.numel()


class RandomReinit(ScheduledRewrite):
    """Re-initialise dead latents along random directions, uniform on the unit sphere.

    A control for the data-driven remedies: the scales, the Adam reset and the learning-rate
    re-warm-up are those of ``AnthropicResampling``; only the directions differ.
    """

    name = "reinit"

    def edit(self, trainer: Trainer, latents: torch.Tensor, dead: torch.Tensor) -> int:
        gaussian = torch.randn(latents.numel(), trainer.sae.cfg.d_in, generator=self.generator)
        norms = self.row_norms(trainer, dead)
        rewrite_latents(self.params, trainer.optimizer, latents, unit_rows(gaussian), norms)
        return latents.numel()


class ResidualSVDResampling(ScheduledRewrite):
    """Point dead latents along the top singular directions of recent residuals ``x - x_hat``.

    The right singular vectors v_1, v_2, ... of the residual matrix ``[m, d_in]`` are the
    directions along which the SAE leaves the most squared error. A latent only adds positive
    multiples of its decoder row, so each direction is handed out with both signs: the dead
    latents take v_1, -v_1, v_2, -v_2, ... in that order. At most ``2 * rank`` latents can be
    revived per event; the rest wait for the next one. Scales, Adam reset and re-warm-up are
    those of ``AnthropicResampling``.
    """

    name = "residual_svd"

    def edit(self, trainer: Trainer, latents: torch.Tensor, dead: torch.Tensor) -> int:
        residuals = self.sample.sample().residuals.float()  # [m, d_in]
        if residuals.shape[0] == 0:
            return 0
        _, singular_values, right = torch.linalg.svd(residuals, full_matrices=False)
        right = right[singular_values > singular_values[0] * 1e-6]  # [rank, d_in]
        signed = torch.stack([right, -right], dim=1).reshape(-1, right.shape[-1])  # [2 rank, d_in]
        count = min(latents.numel(), signed.shape[0])
        norms = self.row_norms(trainer, dead)
        rewrite_latents(self.params, trainer.optimizer, latents[:count], signed[:count], norms)
        return count


class BiasBoost(ScheduledRewrite):
    """Raise a dead latent's encoder bias until it fires on its fair share of recent inputs.

    Bias adaptation steers each latent's firing frequency towards a target by moving its bias
    alone (Chen et al., 2025, "Taming Polysemanticity in LLMs: Provable Feature Recovery via
    Sparse Autoencoders"), much as DeSieno's "conscience" (1988, "Adding a conscience to
    competitive learning") gives units that rarely win a bias until each wins an equal share.
    Here only dead latents move, in one step per event. On the recent sample, latent j fires
    on token x when ``pre_j(x) + delta > threshold(x)``, where ``threshold`` is the smallest
    positive activation on that token. ``delta`` is the quantile of ``threshold - pre_j`` that
    makes it fire on a fraction ``L0 / d_sae`` of the sample (the average latent's frequency),
    that is on its ``round(m * L0 / d_sae)`` tokens of smallest margin.
    Encoder and decoder rows keep their directions, only ``b_enc`` and its Adam moments change,
    and the learning rate does not re-warm.

    NOTE: this is a one-shot, dead-latents-only form of bias adaptation. It does not reproduce
    the group structure or the update schedule of Chen et al.'s Group Bias Adaptation.
    """

    name = "bias_boost"
    rewarms_lr = False
    needs_thresholds = True

    @torch.no_grad()
    def edit(self, trainer: Trainer, latents: torch.Tensor, dead: torch.Tensor) -> int:
        sample = self.sample.sample()
        if sample.inputs.shape[0] == 0:
            return 0
        latents = latents.to(self.params.b_enc.device)
        centred = encoder_input(trainer.sae, sample.inputs)  # [m, d_in]
        share = max(trainer.l0.l0, 1.0) / trainer.sae.cfg.d_sae
        rank = min(centred.shape[0], max(1, round(share * centred.shape[0])))
        for chunk in latents.split(BOOST_CHUNK_LATENTS):
            pre_acts = centred @ self.params.W_enc[:, chunk] + self.params.b_enc[chunk]  # [m, c]
            margins = sample.thresholds[:, None] - pre_acts  # [m, c]
            delta = margins.kthvalue(rank, dim=0).values  # [c]
            # A hair above the rank-th margin makes the comparison strict for those tokens.
            delta = delta + delta.abs().clamp_min(1.0) * 1e-4
            self.params.b_enc[chunk] += delta.clamp_min(0.0)
        reset_adam_moments(trainer.optimizer, self.params.b_enc, latents, dim=0)
        return latents.numel()


def draw_proportional(
    weights: torch.Tensor, count: int, generator: torch.Generator
) -> torch.Tensor:
    """Draw ``count`` indices of ``weights`` ``[m]`` with probability proportional to them.

    Draws without replacement while enough weights are positive, so that distinct latents get
    distinct inputs; falls back to uniform weights when all are zero.
    """
    weights = weights.double()
    if not weights.sum() > 0:
        weights = torch.ones_like(weights)
    replacement = int((weights > 0).sum()) < count
    return torch.multinomial(weights, count, replacement=replacement, generator=generator)
