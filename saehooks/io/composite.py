"""The native folder of a composite SAE (mixture of experts, hierarchical, deep encoder).

The folder has the same two files as a plain SAE, ``cfg.json`` and ``sae_weights.safetensors``,
but SAELens cannot read it: SAELens has no composite architectures, so the layout is saehooks's
own.

- ``cfg.json`` holds ``"format": "saehooks-composite"``, every field of the composite's config
  (``architecture`` included, see ``CompositeConfig.to_dict``) and a ``metadata`` object with
  ``model_name``, ``hook_name`` and any extra values, as the plain layout has.
- ``sae_weights.safetensors`` holds the module's ``state_dict`` under its own names
  (``experts.0.W_enc``, ``parent.W_dec``, ``W_hidden`` ...), trackers left out, in the config's
  dtype.

Input normalisation is folded into the weights before saving. Loading builds the module from
``cfg.json`` and requires the weight file to have exactly its keys, shapes and dtype.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from saehooks.io.native import (
    CFG_FILENAME,
    WEIGHTS_FILENAME,
    _check_replaceable,
    _move_into_place,
    _read_cfg_json,
    _temporary_folder,
    reject_non_finite,
)
from saehooks.sae.build import COMPOSITE_CONFIGS, SAE_CLASSES
from saehooks.sae.composite import CompositeConfig, CompositeSAE
from saehooks.sae.config import DTYPES

logger = logging.getLogger(__name__)

FORMAT = "saehooks-composite"


def weights_of(sae: CompositeSAE) -> dict[str, torch.Tensor]:
    """The tensors a composite folder stores: the ``state_dict`` without tracker state."""
    return {
        name: value.detach()
        for name, value in sae.state_dict().items()
        if not name.startswith("trackers.") and ".trackers." not in name
    }


def save_composite(
    sae: CompositeSAE, folder: str | Path, extra: dict[str, Any] | None = None
) -> Path:
    """Write a composite SAE to ``folder``, with the arguments and errors of ``save_sae``."""
    target = Path(folder).resolve()
    _check_replaceable(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    cfg = sae.cfg
    metadata: dict[str, Any] = {"model_name": cfg.model_name, "hook_name": cfg.hook_name}
    for key, value in (extra or {}).items():
        if key in metadata:
            raise ValueError(
                f"extra key {key!r} would overwrite the SAE's own {key}={metadata[key]!r}; "
                f"set it in the SAE's config instead"
            )
        metadata[key] = value
    cfg_values = {"format": FORMAT, **cfg.to_dict(), "metadata": metadata}
    tensors = {name: value.to("cpu").contiguous() for name, value in weights_of(sae).items()}

    with _temporary_folder(target) as staging:
        save_file(tensors, str(staging / WEIGHTS_FILENAME), metadata={"format": "pt"})
        with open(staging / CFG_FILENAME, "w") as cfg_file:
            json.dump(cfg_values, cfg_file, indent=2)
        _move_into_place(staging, target)
    logger.info("saved %s SAE (d_sae=%d) to %s", cfg.architecture, cfg.d_sae, target)
    return target


def load_composite(
    folder: str | Path, device: torch.device | str = "cpu", dtype: str | None = None
) -> CompositeSAE:
    """Load a composite SAE saved by :func:`save_composite`, with the arguments of ``load_sae``.

    Raises:
        FileNotFoundError: either file is missing.
        ValueError: ``cfg.json`` has an unknown key or format, or the weights do not match the
            module it describes in key set, shape or dtype.
    """
    folder = Path(folder)
    cfg_path, weights_path = folder / CFG_FILENAME, folder / WEIGHTS_FILENAME
    for path in (cfg_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path.name} not found in {folder}. A saved SAE folder contains "
                f"{CFG_FILENAME} and {WEIGHTS_FILENAME}"
            )
    file_cfg = composite_config_from_dict(_read_cfg_json(cfg_path), cfg_path)
    if dtype is not None and dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not supported; use one of {tuple(DTYPES)}")
    cfg = file_cfg
    if dtype is not None:
        cfg = dataclasses.replace(file_cfg, dtype=dtype)  # type: ignore[type-var]  # a dataclass
    try:
        tensors = load_file(str(weights_path), device="cpu")
    except SafetensorError as error:
        raise ValueError(f"{weights_path} is not a valid safetensors file: {error}") from error

    sae = SAE_CLASSES[cfg.architecture](cfg, device=device)
    expected = weights_of(sae)
    _check_tensors(tensors, expected, file_cfg, weights_path)
    reject_non_finite(tensors, weights_path)
    sae.load_state_dict(tensors)  # casts to the dtype of cfg
    logger.info("loaded %s SAE (d_sae=%d) from %s", cfg.architecture, cfg.d_sae, folder)
    return sae


def composite_config_from_dict(
    values: dict[str, Any], source: Path | str = CFG_FILENAME
) -> CompositeConfig:
    """Build a composite's config from ``cfg.json`` contents; errors name ``source``."""
    values = dict(values)
    file_format = values.pop("format", None)
    if file_format != FORMAT:
        raise ValueError(f"{source}: format={file_format!r} is not {FORMAT!r}")
    metadata = values.pop("metadata", {})
    if not isinstance(metadata, dict):
        raise ValueError(f"{source}: 'metadata' must be a JSON object, found {metadata!r}")
    for key in ("hook_name", "model_name"):
        if key not in metadata:
            continue
        values.setdefault(key, metadata[key])
        if values[key] != metadata[key]:
            raise ValueError(
                f"{source}: {key} is {values[key]!r} at the top level but {metadata[key]!r} in "
                f"metadata; make them agree"
            )
    architecture = values.get("architecture")
    if architecture not in COMPOSITE_CONFIGS:
        raise ValueError(
            f"{source}: architecture {architecture!r} is not a composite; expected one of "
            f"{sorted(COMPOSITE_CONFIGS)}"
        )
    try:
        return COMPOSITE_CONFIGS[architecture].from_dict(values)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{source}: {error}") from error


def _check_tensors(
    tensors: dict[str, torch.Tensor],
    expected: dict[str, torch.Tensor],
    file_cfg: CompositeConfig,
    weights_path: Path,
) -> None:
    """Raise ``ValueError`` naming the file and tensor on any key, shape or dtype mismatch."""
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{weights_path}: tensor keys do not match the {file_cfg.architecture} config; "
            f"missing {missing[:10]}, unexpected {unexpected[:10]} "
            f"({len(missing)} missing and {len(unexpected)} unexpected in all)"
        )
    for name, parameter in expected.items():
        found = tensors[name]
        if found.shape != parameter.shape:
            raise ValueError(
                f"{weights_path}: tensor {name!r} has shape {tuple(found.shape)}, expected "
                f"{tuple(parameter.shape)} from {CFG_FILENAME}"
            )
        if found.dtype != file_cfg.torch_dtype:
            raise ValueError(
                f"{weights_path}: tensor {name!r} has dtype {found.dtype}, expected "
                f"{file_cfg.torch_dtype} from dtype={file_cfg.dtype!r} in {CFG_FILENAME}"
            )
