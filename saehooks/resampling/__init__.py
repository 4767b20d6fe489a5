"""Dead-latent remedies behind one interface."""

from saehooks.resampling.auxiliary import AuxK, GhostGrads, auxk_terms, ghost_grads_terms
from saehooks.resampling.base import Remedy
from saehooks.resampling.config import REMEDY_NAMES, RemedyConfig
from saehooks.resampling.factory import build_remedies
from saehooks.resampling.rewrite import (
    AnthropicResampling,
    BiasBoost,
    RandomReinit,
    ResidualSVDResampling,
)

__all__ = [
    "REMEDY_NAMES",
    "AnthropicResampling",
    "AuxK",
    "BiasBoost",
    "GhostGrads",
    "RandomReinit",
    "Remedy",
    "RemedyConfig",
    "ResidualSVDResampling",
    "auxk_terms",
    "build_remedies",
    "ghost_grads_terms",
]
