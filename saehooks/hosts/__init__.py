"""Host models: the ``Host`` protocol, its TransformerLens and nnsight adapters, model loading.

``TransformerLensHost`` and ``NNsightHost`` are imported on first use, because importing
TransformerLens or nnsight takes seconds and code that only needs the ``Host`` protocol should not
pay for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import torch

from saehooks.hosts.base import CacheRun, HookFunction, Host, Replacement
from saehooks.hosts.loading import DEFAULT_MODEL, LoadedModel, load_hf_model, model_label
from saehooks.hosts.smollm2 import default_model_dir

if TYPE_CHECKING:
    from saehooks.hosts.nnsight import NNsightHost
    from saehooks.hosts.transformer_lens import TransformerLensHost

Backend = Literal["transformer_lens", "nnsight"]
BACKENDS: tuple[str, ...] = ("transformer_lens", "nnsight")


def load_host(
    name_or_path: str = DEFAULT_MODEL,
    dtype: torch.dtype = torch.float32,
    backend: Backend = "transformer_lens",
    activation_dtype: torch.dtype | None = None,
) -> Host:
    """Load a model (see ``load_hf_model``) in ``dtype`` as a host of the given backend.

    ``activation_dtype`` sets the dtype of the activations ``harvest`` returns, so that a
    bfloat16 model can feed a float32 SAE; None keeps the model's dtype.

    Raises:
        ValueError: ``backend`` is not one of ``BACKENDS``.
    """
    if backend == "transformer_lens":
        from saehooks.hosts.transformer_lens import TransformerLensHost

        return TransformerLensHost.load(
            name_or_path, dtype=dtype, activation_dtype=activation_dtype
        )
    if backend == "nnsight":
        from saehooks.hosts.nnsight import NNsightHost

        return NNsightHost.load(name_or_path, dtype=dtype, activation_dtype=activation_dtype)
    raise ValueError(f"backend={backend!r} is not supported; use one of {BACKENDS}")


def __getattr__(name: str) -> Any:
    if name == "TransformerLensHost":
        from saehooks.hosts.transformer_lens import TransformerLensHost

        return TransformerLensHost
    if name == "NNsightHost":
        from saehooks.hosts.nnsight import NNsightHost

        return NNsightHost
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BACKENDS",
    "DEFAULT_MODEL",
    "Backend",
    "CacheRun",
    "HookFunction",
    "Host",
    "LoadedModel",
    "NNsightHost",
    "Replacement",
    "TransformerLensHost",
    "default_model_dir",
    "load_hf_model",
    "load_host",
    "model_label",
]
