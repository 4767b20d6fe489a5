"""Host models: the ``Host`` protocol, its TransformerLens adapter, and model loading.

``TransformerLensHost`` is imported on first use, because importing TransformerLens takes
seconds and code that only needs the ``Host`` protocol should not pay for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from saehooks.hosts.base import Host, Replacement
from saehooks.hosts.loading import DEFAULT_MODEL, LoadedModel, load_hf_model, model_label
from saehooks.hosts.smollm2 import default_model_dir

if TYPE_CHECKING:
    from saehooks.hosts.transformer_lens import TransformerLensHost


def load_host(name_or_path: str = DEFAULT_MODEL, dtype: torch.dtype = torch.float32) -> Host:
    """Load a model (see ``load_hf_model``) as a ``TransformerLensHost``."""
    from saehooks.hosts.transformer_lens import TransformerLensHost

    return TransformerLensHost.load(name_or_path, dtype=dtype)


def __getattr__(name: str) -> Any:
    if name == "TransformerLensHost":
        from saehooks.hosts.transformer_lens import TransformerLensHost

        return TransformerLensHost
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
