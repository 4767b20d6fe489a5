"""Build the remedy a ``RemedyConfig`` names."""

from __future__ import annotations

from saehooks.resampling.auxiliary import AuxK, GhostGrads
from saehooks.resampling.base import Remedy
from saehooks.resampling.config import RemedyConfig
from saehooks.resampling.rewrite import (
    AnthropicResampling,
    BiasBoost,
    RandomReinit,
    ResidualSVDResampling,
)

REMEDIES = {
    "anthropic": AnthropicResampling,
    "ghost_grads": GhostGrads,
    "auxk": AuxK,
    "reinit": RandomReinit,
    "residual_svd": ResidualSVDResampling,
    "bias_boost": BiasBoost,
}


def build_remedies(cfg: RemedyConfig | None) -> list[Remedy]:
    """The remedies to hand to the ``Trainer``: none for ``remedy='none'`` or no config."""
    if cfg is None or cfg.remedy == "none":
        return []
    return [REMEDIES[cfg.remedy](cfg)]
