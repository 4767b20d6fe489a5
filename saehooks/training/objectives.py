"""What each architecture adds to the reconstruction loss, and which constraints it trains under."""

from __future__ import annotations

from saehooks.sae import SparseAutoencoder
from saehooks.trackers import (
    BatchTopKThreshold,
    DecoderNormL1,
    GatedAuxiliaryReconstruction,
    GateL1,
    LoadBalance,
    MatryoshkaReconstruction,
    PenaltyTracker,
    StepL0Penalty,
    TanhL0Penalty,
    Tracker,
)
from saehooks.training.config import TrainingConfig

# Architectures whose decoder rows are kept at unit norm during training.
UNIT_NORM_DECODER = (
    "topk", "batchtopk", "matryoshka", "jumprelu", "gated", "moe", "hierarchical", "deep"
)


def default_penalties(sae: SparseAutoencoder, cfg: TrainingConfig) -> dict[str, PenaltyTracker]:
    """The penalty trackers that train ``sae``'s architecture, keyed by the name they log under."""
    architecture = sae.cfg.architecture
    warmup_steps = int(cfg.l1_warmup_fraction * cfg.total_steps)
    if architecture == "relu":
        return {"l1": DecoderNormL1(cfg.l1_coefficient, warmup_steps)}
    if architecture == "jumprelu":
        if cfg.l0_penalty == "tanh":
            return {"l0_penalty": TanhL0Penalty(cfg.l0_coefficient, warmup_steps)}
        return {"l0_penalty": StepL0Penalty(cfg.l0_coefficient, warmup_steps)}
    if architecture == "gated":
        # The auxiliary reconstruction has weight 1 and no warm-up, as in Rajamanoharan et al.
        # (2024), "Improving Dictionary Learning with Gated Sparse Autoencoders", section 3.2.
        return {
            "l1": GateL1(cfg.l1_coefficient, warmup_steps),
            "gate_aux": GatedAuxiliaryReconstruction(),
        }
    if architecture == "matryoshka":
        return {"matryoshka": MatryoshkaReconstruction()}
    if architecture == "moe":
        return {"balance": LoadBalance(sae.cfg.experts_per_token, sae.cfg.balance_coefficient)}
    return {}


def default_estimators(sae: SparseAutoencoder) -> dict[str, Tracker]:
    """Trackers that estimate a quantity the trained SAE needs, keyed by name."""
    if sae.cfg.architecture in ("batchtopk", "matryoshka"):
        return {"threshold": BatchTopKThreshold()}
    return {}


def uses_unit_norm_decoder(sae: SparseAutoencoder) -> bool:
    """True when decoder rows are kept at unit norm during training.

    TopK SAEs keep unit-norm rows (Gao et al., 2024, section 2.3), and so do the gated SAEs of
    Rajamanoharan et al. (2024), whose L1 penalty would otherwise shrink the gate path while the
    decoder grows. BatchTopK, Matryoshka and JumpReLU SAEs keep them too, so that activations
    and thresholds are in the units of the input. The composites (mixture of experts,
    hierarchical, deep encoder) read their latents through TopK and keep them too. ReLU SAEs do
    not, because their L1 penalty is weighted by the row norms instead.
    """
    return sae.cfg.architecture in UNIT_NORM_DECODER
