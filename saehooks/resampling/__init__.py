"""Dead-latent remedies behind one interface."""

from saehooks.resampling.base import Remedy

__all__ = ["Remedy"]
