"""Build the SAE module that a config's architecture names, plain or composite."""

from __future__ import annotations

import torch
from torch import nn

from saehooks.sae.batchtopk import BatchTopKSAE
from saehooks.sae.composite import CompositeConfig
from saehooks.sae.config import SAEConfig
from saehooks.sae.deep import DeepConfig, DeepEncoderSAE
from saehooks.sae.gated import GatedSAE
from saehooks.sae.hierarchical import HierarchicalConfig, HierarchicalSAE
from saehooks.sae.jumprelu import JumpReLUSAE
from saehooks.sae.mixture import MixtureConfig, MixtureOfExperts
from saehooks.sae.sparse_autoencoder import SparseAutoencoder

# 'matryoshka' shares BatchTopK's forward pass; its nested-prefix losses come from a tracker.
# The composites ('moe', 'hierarchical', 'deep') take their own configs, in COMPOSITE_CONFIGS.
SAE_CLASSES: dict[str, type[nn.Module]] = {
    "relu": SparseAutoencoder,
    "topk": SparseAutoencoder,
    "batchtopk": BatchTopKSAE,
    "matryoshka": BatchTopKSAE,
    "jumprelu": JumpReLUSAE,
    "gated": GatedSAE,
    "moe": MixtureOfExperts,
    "hierarchical": HierarchicalSAE,
    "deep": DeepEncoderSAE,
}
COMPOSITE_CONFIGS: dict[str, type[CompositeConfig]] = {
    "moe": MixtureConfig,
    "hierarchical": HierarchicalConfig,
    "deep": DeepConfig,
}


def build_sae(
    cfg: SAEConfig | CompositeConfig, device: torch.device | str | None = None
) -> SparseAutoencoder:
    """A freshly initialised SAE of the class that ``cfg.architecture`` names."""
    if cfg.architecture not in SAE_CLASSES:
        raise ValueError(
            f"architecture={cfg.architecture!r} has no SAE class; add it to "
            f"saehooks.sae.build.SAE_CLASSES (known: {sorted(SAE_CLASSES)})"
        )
    # The composites are not SparseAutoencoder subclasses, but they honour its contract.
    return SAE_CLASSES[cfg.architecture](cfg, device=device)  # type: ignore[return-value]
