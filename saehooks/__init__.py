"""saehooks: train, splice and evaluate sparse autoencoders on language-model activations."""

from saehooks.sae import SAEConfig, SparseAutoencoder

__all__ = ["SAEConfig", "SparseAutoencoder"]
__version__ = "0.1.0"
