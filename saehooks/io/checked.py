"""Checked reading of foreign weight files: key sets, shapes and dtypes before any conversion.

The readers of SAELens, sparsify and dictionary_learning folders share these steps:

1. read the tensors (``safetensors``, or ``torch.load(weights_only=True)`` for ``.pt`` files),
   turning a truncated or corrupted file into a ``ValueError`` that names it;
2. compare the tensor names and shapes, in the foreign project's own names, with what its config
   implies, so that an error message shows the names that are in the file;
3. settle the dtype: the one the config states, else the one the file stores;
4. copy the tensors, renamed and transposed into saehooks's layout, into a freshly built SAE.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pickle
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from saehooks.io.native import reject_non_finite
from saehooks.sae.build import build_sae
from saehooks.sae.config import DTYPES, SAEConfig
from saehooks.sae.sparse_autoencoder import SparseAutoencoder

logger = logging.getLogger(__name__)


class TensorSpec(NamedTuple):
    """One tensor a foreign weight file must contain."""

    name: str
    """The tensor's name in the file."""
    shape: tuple[int, ...]
    """The shape the config implies."""
    floating: bool = True
    """Whether the tensor contains floats in the SAE's dtype, False for integer buffers (k)."""


def require_file(path: Path, layout: str) -> Path:
    """Return ``path``, raising ``FileNotFoundError`` that names the layout when it is missing."""
    if not path.is_file():
        raise FileNotFoundError(
            f"{path.name} not found in {path.parent}; a {layout} folder needs it"
        )
    return path


def read_json_object(path: Path) -> dict[str, Any]:
    """Read a JSON file that must contain one object."""
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(values, dict):
        raise ValueError(f"{path} must contain a JSON object, found {type(values).__name__}")
    return values


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Read every tensor of a safetensors file on the CPU.

    Raises:
        ValueError: the file is truncated, corrupted or not a safetensors file, or a tensor
            contains NaN or infinite values.
    """
    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as error:
        raise ValueError(
            f"{path} is not a valid safetensors file ({error}); download or copy it again"
        ) from error
    reject_non_finite(tensors, path)
    return tensors


def read_torch_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a ``.pt`` state dict with ``torch.load(weights_only=True)``, which never runs code.

    Raises:
        ValueError: the file is truncated or corrupted, contains objects other than tensors, is
            not a dict of tensors, or a tensor contains NaN or infinite values.
    """
    try:
        values = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as error:
        raise ValueError(
            f"{path} could not be read as a tensor-only torch file ({error}); the file is "
            "truncated or corrupted, or contains objects that weights_only loading rejects"
        ) from error
    if not isinstance(values, dict) or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in values.items()
    ):
        raise ValueError(
            f"{path} must contain a dict of named tensors, found {type(values).__name__}"
        )
    reject_non_finite(values, path)
    return values


def check_tensors(tensors: dict[str, torch.Tensor], specs: list[TensorSpec], source: Path) -> None:
    """Check that ``tensors`` has exactly the names of ``specs``, with their shapes.

    Raises:
        ValueError: naming ``source``, the missing or unexpected names, or the tensor whose shape
            differs from the config.
    """
    expected = {spec.name for spec in specs}
    missing = sorted(expected - set(tensors))
    unexpected = sorted(set(tensors) - expected)
    if missing or unexpected:
        raise ValueError(
            f"{source}: tensor names do not match the config; missing {missing}, unexpected "
            f"{unexpected}, expected exactly {sorted(expected)}"
        )
    for spec in specs:
        found = tuple(tensors[spec.name].shape)
        if found != spec.shape:
            raise ValueError(
                f"{source}: tensor {spec.name!r} has shape {found}, but the config implies "
                f"{spec.shape}; the weights and the config belong to different SAEs"
            )


def dtype_name(dtype: torch.dtype) -> str:
    """Return the saehooks name of a torch dtype, for example ``'bfloat16'``."""
    for name, value in DTYPES.items():
        if value == dtype:
            return name
    raise ValueError(f"dtype {dtype} is not supported; use one of {tuple(DTYPES)}")


def parse_dtype(value: str, source: Path) -> str:
    """Normalise a dtype named in a config (``'float32'`` or ``'torch.float32'``)."""
    name = value.removeprefix("torch.") if isinstance(value, str) else value
    if name not in DTYPES:
        raise ValueError(f"{source}: dtype {value!r} is not supported; use one of {tuple(DTYPES)}")
    return name


def settle_dtype(
    stated: str | None,
    tensors: dict[str, torch.Tensor],
    specs: list[TensorSpec],
    source: Path,
    float32_names: frozenset[str] = frozenset(),
) -> str:
    """Return the SAE's dtype: ``stated`` by the config, else the one the file's tensors share.

    Every floating tensor must have that dtype; names in ``float32_names`` may also be float32.

    Raises:
        ValueError: the tensors disagree with each other or with ``stated``.
    """
    floating = [spec.name for spec in specs if spec.floating]
    if stated is None:
        found = {tensors[name].dtype for name in floating if name not in float32_names}
        if len(found) != 1:
            raise ValueError(
                f"{source}: the config states no dtype and the tensors have several "
                f"({sorted(str(dtype) for dtype in found)}); store them in one dtype"
            )
        stated = dtype_name(found.pop())
    expected = DTYPES[stated]
    for name in floating:
        allowed = {expected, torch.float32} if name in float32_names else {expected}
        if tensors[name].dtype not in allowed:
            raise ValueError(
                f"{source}: tensor {name!r} has dtype {tensors[name].dtype}, expected {expected}"
            )
    return stated


def assemble(
    cfg: SAEConfig,
    tensors: dict[str, torch.Tensor],
    device: torch.device | str = "cpu",
    dtype: str | None = None,
) -> SparseAutoencoder:
    """Build the SAE of ``cfg`` and copy ``tensors`` (saehooks names and layout) into it.

    ``dtype`` casts the parameters; ``None`` keeps ``cfg.dtype``, the dtype of the file.
    """
    if dtype is not None and dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not supported; use one of {tuple(DTYPES)}")
    if dtype is not None:
        cfg = dataclasses.replace(cfg, dtype=dtype)
    sae = build_sae(cfg, device=device)
    parameters = dict(sae.named_parameters(recurse=False))
    if set(parameters) != set(tensors):
        raise ValueError(
            f"converted tensors {sorted(tensors)} do not match the parameters "
            f"{sorted(parameters)} of a {cfg.architecture} SAE"
        )
    with torch.no_grad():
        for name, parameter in parameters.items():
            if tensors[name].shape != parameter.shape:
                raise ValueError(
                    f"converted tensor {name!r} has shape {tuple(tensors[name].shape)}, "
                    f"expected {tuple(parameter.shape)}"
                )
            parameter.copy_(tensors[name])  # casts when dtype differs
    return sae
