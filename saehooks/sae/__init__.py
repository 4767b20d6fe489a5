"""Sparse autoencoders and the hook points inside them."""

from saehooks.sae.batchtopk import BatchTopKSAE
from saehooks.sae.build import COMPOSITE_CONFIGS, SAE_CLASSES, build_sae
from saehooks.sae.composite import CompositeConfig, CompositeSAE
from saehooks.sae.config import SAEConfig
from saehooks.sae.deep import DeepConfig, DeepEncoderSAE
from saehooks.sae.gated import GatedSAE
from saehooks.sae.hierarchical import ChildUsage, HierarchicalConfig, HierarchicalSAE, child_usage
from saehooks.sae.hook_point import HookPoint
from saehooks.sae.jumprelu import JumpReLUSAE
from saehooks.sae.mixture import MixtureConfig, MixtureOfExperts
from saehooks.sae.sparse_autoencoder import SparseAutoencoder

__all__ = [
    "COMPOSITE_CONFIGS",
    "SAE_CLASSES",
    "BatchTopKSAE",
    "ChildUsage",
    "CompositeConfig",
    "CompositeSAE",
    "DeepConfig",
    "DeepEncoderSAE",
    "GatedSAE",
    "HierarchicalConfig",
    "HierarchicalSAE",
    "HookPoint",
    "JumpReLUSAE",
    "MixtureConfig",
    "MixtureOfExperts",
    "SAEConfig",
    "SparseAutoencoder",
    "build_sae",
    "child_usage",
]
