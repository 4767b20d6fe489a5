"""Host models: the ``Host`` protocol, its TransformerLens adapter, and model loading."""

import torch

from saehooks.hosts.base import Host, Replacement
from saehooks.hosts.loading import DEFAULT_MODEL, LoadedModel, load_hf_model, model_label
from saehooks.hosts.smollm2 import default_model_dir
from saehooks.hosts.transformer_lens import TransformerLensHost


def load_host(name_or_path: str = DEFAULT_MODEL, dtype: torch.dtype = torch.float32) -> Host:
    """Load a model (see ``load_hf_model``) as a ``TransformerLensHost``."""
    return TransformerLensHost.load(name_or_path, dtype=dtype)


__all__ = [
    "DEFAULT_MODEL",
    "Host",
    "LoadedModel",
    "Replacement",
    "TransformerLensHost",
    "default_model_dir",
    "load_hf_model",
    "load_host",
    "model_label",
]
