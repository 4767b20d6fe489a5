"""Sparse autoencoders and the hook points inside them."""

from saehooks.sae.batchtopk import BatchTopKSAE
from saehooks.sae.build import SAE_CLASSES, build_sae
from saehooks.sae.config import SAEConfig
from saehooks.sae.gated import GatedSAE
from saehooks.sae.hook_point import HookPoint
from saehooks.sae.jumprelu import JumpReLUSAE
from saehooks.sae.sparse_autoencoder import SparseAutoencoder

__all__ = [
    "SAE_CLASSES",
    "BatchTopKSAE",
    "GatedSAE",
    "HookPoint",
    "JumpReLUSAE",
    "SAEConfig",
    "SparseAutoencoder",
    "build_sae",
]
