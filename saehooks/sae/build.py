"""Build the SAE module that an ``SAEConfig``'s architecture names."""

from __future__ import annotations

import torch

from saehooks.sae.batchtopk import BatchTopKSAE
from saehooks.sae.config import SAEConfig
from saehooks.sae.gated import GatedSAE
from saehooks.sae.jumprelu import JumpReLUSAE
from saehooks.sae.sparse_autoencoder import SparseAutoencoder

# 'matryoshka' shares BatchTopK's forward pass; its nested-prefix losses come from a tracker.
SAE_CLASSES: dict[str, type[SparseAutoencoder]] = {
    "relu": SparseAutoencoder,
    "topk": SparseAutoencoder,
    "batchtopk": BatchTopKSAE,
    "matryoshka": BatchTopKSAE,
    "jumprelu": JumpReLUSAE,
    "gated": GatedSAE,
}


def build_sae(cfg: SAEConfig, device: torch.device | str | None = None) -> SparseAutoencoder:
    """A freshly initialised SAE of the class that ``cfg.architecture`` names."""
    if cfg.architecture not in SAE_CLASSES:
        raise ValueError(
            f"architecture={cfg.architecture!r} has no SAE class; add it to "
            f"saehooks.sae.build.SAE_CLASSES (known: {sorted(SAE_CLASSES)})"
        )
    return SAE_CLASSES[cfg.architecture](cfg, device=device)
