"""What each architecture adds to the reconstruction loss, and which constraints it trains under."""

from __future__ import annotations

from saehooks.sae import SparseAutoencoder
from saehooks.trackers import DecoderNormL1, PenaltyTracker
from saehooks.training.config import TrainingConfig


def default_penalties(sae: SparseAutoencoder, cfg: TrainingConfig) -> dict[str, PenaltyTracker]:
    """The penalty trackers that train ``sae``'s architecture, keyed by the name they log under."""
    if sae.cfg.architecture == "relu":
        warmup_steps = int(cfg.l1_warmup_fraction * cfg.total_steps)
        return {"l1": DecoderNormL1(cfg.l1_coefficient, warmup_steps)}
    return {}


def uses_unit_norm_decoder(sae: SparseAutoencoder) -> bool:
    """True when decoder rows are kept at unit norm during training.

    TopK SAEs keep unit-norm rows (Gao et al., 2024, section 2.3). ReLU SAEs do not, because their
    L1 penalty is weighted by the row norms instead.
    """
    return sae.cfg.architecture == "topk"
