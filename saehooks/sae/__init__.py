"""Sparse autoencoders and the hook points inside them."""

from saehooks.sae.config import SAEConfig
from saehooks.sae.hook_point import HookPoint
from saehooks.sae.sparse_autoencoder import SparseAutoencoder

__all__ = ["HookPoint", "SAEConfig", "SparseAutoencoder"]
