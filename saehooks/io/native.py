"""The native SAE folder: ``cfg.json`` plus ``sae_weights.safetensors`` in SAELens's layout.

A saved SAE is a folder that contains exactly two files:

- ``sae_weights.safetensors`` with ``W_enc`` ``[d_in, d_sae]``, ``W_dec`` ``[d_sae, d_in]``,
  ``b_enc`` ``[d_sae]`` and ``b_dec`` ``[d_in]``, in the SAE's dtype. JumpReLU SAEs add
  ``threshold`` ``[d_sae]`` in float32. Gated SAEs have ``b_gate``, ``r_mag`` and ``b_mag``
  ``[d_sae]`` in place of ``b_enc``.
- ``cfg.json`` with the keys SAELens 6 reads (``d_in``, ``d_sae``, ``architecture``, ``k`` for
  TopK, ``dtype``, ``device``, ``apply_b_dec_to_input``, ``normalize_activations``,
  ``reshape_activations`` and a ``metadata`` object with ``model_name`` and ``hook_name``), plus
  ``hook_name`` and ``model_name`` at the top level as older readers expect.

BatchTopK and Matryoshka SAEs are saved as JumpReLU SAEs whose latents all share the estimated
inference threshold, as SAELens does too, so the saved SAE runs token by token. ``metadata``
records the architecture they were trained as.

Composite SAEs (mixture of experts, hierarchical, deep encoder) have a layout of their own,
described in ``saehooks.io.composite``; ``save_sae`` and ``load_sae`` hand them over to it.

Activation normalisation is folded into the weights before saving, so ``normalize_activations``
is always ``"none"``. Loading never unpickles: the weights come from ``safetensors`` and are
checked key by key against the module built from ``cfg.json``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from saehooks.sae.batchtopk import BatchTopKSAE
from saehooks.sae.build import COMPOSITE_CONFIGS, build_sae
from saehooks.sae.composite import CompositeSAE
from saehooks.sae.config import DTYPES, SAEConfig
from saehooks.sae.sparse_autoencoder import SparseAutoencoder

logger = logging.getLogger(__name__)

CFG_FILENAME = "cfg.json"
WEIGHTS_FILENAME = "sae_weights.safetensors"
WEIGHT_NAMES = ("W_enc", "W_dec", "b_enc", "b_dec")
# The tensors of each saved architecture, in SAELens's names.
ARCHITECTURE_WEIGHTS = {
    "relu": WEIGHT_NAMES,
    "topk": WEIGHT_NAMES,
    "jumprelu": (*WEIGHT_NAMES, "threshold"),
    "gated": ("W_enc", "W_dec", "b_dec", "b_gate", "r_mag", "b_mag"),
}
# Tensors stored in float32 whatever the SAE's dtype (SAELens may store them in that dtype).
FLOAT32_WEIGHTS = frozenset({"threshold"})
# JumpReLU training settings kept in metadata, so that a loaded SAE trains on as it was.
JUMPRELU_METADATA = ("jumprelu_threshold", "jumprelu_bandwidth")

# Architecture names in cfg.json (SAELens's spelling) and in SAEConfig.
ARCHITECTURE_TO_FILE = {
    "relu": "standard",
    "topk": "topk",
    "jumprelu": "jumprelu",
    "gated": "gated",
}
ARCHITECTURE_FROM_FILE = {name: ours for ours, name in ARCHITECTURE_TO_FILE.items()}

# Top-level cfg.json keys that load_sae reads. Any other key is rejected rather than dropped,
# because a setting the loader ignored could change what the SAE computes.
KNOWN_CFG_KEYS = frozenset(
    {
        "d_in",
        "d_sae",
        "architecture",
        "k",
        "dtype",
        "device",
        "apply_b_dec_to_input",
        "normalize_activations",
        "reshape_activations",
        "hook_name",
        "model_name",
        "metadata",
    }
)


# -- saving ------------------------------------------------------------------------------------


def sae_cfg_dict(sae: SparseAutoencoder, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build the ``cfg.json`` contents for ``sae``, with ``extra`` merged into ``metadata``."""
    cfg = sae.cfg
    metadata: dict[str, Any] = {"model_name": cfg.model_name, "hook_name": cfg.hook_name}
    for key, value in (extra or {}).items():
        if key in metadata:
            raise ValueError(
                f"extra key {key!r} would overwrite the SAE's own {key}={metadata[key]!r}; "
                f"set it in SAEConfig instead"
            )
        metadata[key] = value

    if cfg.architecture == "jumprelu":
        for key in JUMPRELU_METADATA:
            metadata[key] = getattr(cfg, key)
    if cfg.architecture not in ARCHITECTURE_TO_FILE:
        raise ValueError(
            f"architecture={cfg.architecture!r} has no cfg.json form; save_sae converts "
            f"BatchTopK SAEs to JumpReLU and writes {sorted(ARCHITECTURE_TO_FILE)}"
        )
    values: dict[str, Any] = {
        "architecture": ARCHITECTURE_TO_FILE[cfg.architecture],
        "d_in": cfg.d_in,
        "d_sae": cfg.d_sae,
        "dtype": cfg.dtype,
        "device": "cpu",
        "apply_b_dec_to_input": cfg.apply_b_dec_to_input,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "hook_name": cfg.hook_name,
        "model_name": cfg.model_name,
        "metadata": metadata,
    }
    if cfg.architecture == "topk":
        values["k"] = cfg.k
    return values


def save_sae(
    sae: SparseAutoencoder, folder: str | Path, extra: dict[str, Any] | None = None
) -> Path:
    """Write ``sae`` to ``folder`` as ``cfg.json`` and ``sae_weights.safetensors``.

    The files are written into a temporary folder beside ``folder`` and renamed into place, so an
    interrupted save leaves no partial SAE behind. An existing SAE folder at ``folder`` is replaced
    only after the new one is complete.

    Args:
        sae: the SAE to save. Normalisation must already be folded into its weights.
        folder: the target folder. Its parent is created when missing.
        extra: JSON-serialisable values stored in ``metadata``, for example the number of training
            tokens, the context size or the dataset.

    Returns:
        The resolved target folder.

    Raises:
        FileExistsError: ``folder`` exists and contains anything other than a saved SAE.
        TypeError: ``extra`` contains a value that JSON cannot encode.
    """
    if isinstance(sae, CompositeSAE):
        from saehooks.io.composite import save_composite  # imports this module

        return save_composite(sae, folder, extra)
    target = Path(folder).resolve()
    _check_replaceable(target)
    if isinstance(sae, BatchTopKSAE):
        extra = {**(extra or {}), **_trained_as(sae)}
        sae = sae.to_jumprelu()
    target.parent.mkdir(parents=True, exist_ok=True)
    cfg_values = sae_cfg_dict(sae, extra)
    tensors = {
        name: getattr(sae, name).detach().to("cpu").contiguous()
        for name in ARCHITECTURE_WEIGHTS[sae.cfg.architecture]
    }

    with _temporary_folder(target) as staging:
        save_file(tensors, str(staging / WEIGHTS_FILENAME), metadata={"format": "pt"})
        (staging / WEIGHTS_FILENAME).chmod(0o644)
        with open(staging / CFG_FILENAME, "w") as cfg_file:
            json.dump(cfg_values, cfg_file, indent=2)
        _move_into_place(staging, target)
    logger.info("saved SAE (%s, d_sae=%d) to %s", sae.cfg.architecture, sae.cfg.d_sae, target)
    return target


def _trained_as(sae: BatchTopKSAE) -> dict[str, Any]:
    """Metadata that records how a BatchTopK or Matryoshka SAE was trained before conversion."""
    values: dict[str, Any] = {
        "trained_architecture": sae.cfg.architecture,
        "trained_k": sae.cfg.k,
        "threshold_updates": int(sae.threshold_updates),
    }
    if sae.cfg.matryoshka_widths is not None:
        values["matryoshka_widths"] = list(sae.cfg.matryoshka_widths)
    return values


def _check_replaceable(target: Path) -> None:
    if not target.exists():
        return
    if not target.is_dir():
        raise FileExistsError(f"{target} exists and is not a folder. Choose another SAE folder.")
    contents = {path.name for path in target.iterdir()}
    if contents - {CFG_FILENAME, WEIGHTS_FILENAME}:
        raise FileExistsError(
            f"{target} contains files other than {CFG_FILENAME} and {WEIGHTS_FILENAME} "
            f"({sorted(contents)}); save the SAE to a new or dedicated folder"
        )


@contextmanager
def _temporary_folder(target: Path) -> Iterator[Path]:
    """Create an empty folder beside ``target`` and remove it on exit unless it was renamed."""
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes the folder private; a saved SAE is meant to be shared
    try:
        yield staging
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def _move_into_place(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target``, replacing an existing ``target`` folder.

    Linux cannot rename a folder over a non-empty one, so an old ``target`` is first renamed
    aside and deleted once the new folder is in place. If the second rename fails, the old folder
    is renamed back.
    """
    if not target.exists():
        os.rename(staging, target)
        return

    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.rmdir(old)
    os.rename(target, old)
    try:
        os.rename(staging, target)
    except OSError:
        os.rename(old, target)
        raise
    shutil.rmtree(old)


# -- loading -----------------------------------------------------------------------------------


def load_sae(
    folder: str | Path, device: torch.device | str = "cpu", dtype: str | None = None
) -> SparseAutoencoder:
    """Load an SAE saved by :func:`save_sae` (or by SAELens in the same layout).

    Args:
        folder: a folder holding ``cfg.json`` and ``sae_weights.safetensors``.
        device: where the loaded parameters live.
        dtype: cast the parameters to this dtype after loading (one of float32, float16,
            bfloat16, float64); ``None`` keeps the dtype stored in the file.

    Raises:
        FileNotFoundError: either file is missing.
        ValueError: ``cfg.json`` contains an unknown key, an unsupported architecture or setting, or
            the weights do not match the config in key set, shape or dtype.
    """
    folder = Path(folder)
    cfg_path = folder / CFG_FILENAME
    weights_path = folder / WEIGHTS_FILENAME
    for path in (cfg_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path.name} not found in {folder}. A saved SAE folder contains "
                f"{CFG_FILENAME} and {WEIGHTS_FILENAME}"
            )

    cfg_values = _read_cfg_json(cfg_path)
    if cfg_values.get("architecture") in COMPOSITE_CONFIGS:
        from saehooks.io.composite import load_composite  # imports this module

        # A composite is no SparseAutoencoder subclass, but it honours the same contract.
        return load_composite(folder, device, dtype)  # type: ignore[return-value]
    file_cfg = sae_config_from_dict(cfg_values, cfg_path)
    if dtype is not None and dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not supported; use one of {tuple(DTYPES)}")
    cfg = dataclasses.replace(file_cfg, dtype=dtype) if dtype is not None else file_cfg
    try:
        tensors = load_file(str(weights_path), device="cpu")
    except SafetensorError as error:
        raise ValueError(f"{weights_path} is not a valid safetensors file: {error}") from error

    sae = build_sae(cfg, device=device)
    _check_tensors(tensors, sae, file_cfg, weights_path)
    reject_non_finite(tensors, weights_path)
    with torch.no_grad():
        for name in ARCHITECTURE_WEIGHTS[cfg.architecture]:
            getattr(sae, name).copy_(tensors[name])  # casts when dtype differs from the file
    logger.info("loaded SAE (%s, d_sae=%d) from %s", cfg.architecture, cfg.d_sae, folder)
    return sae


def reject_non_finite(tensors: dict[str, torch.Tensor], source: Path) -> None:
    """Raise when a floating-point tensor read from ``source`` contains NaN or infinity.

    Raises:
        ValueError: naming ``source``, the tensor and how many of its values are not finite.
    """
    for name, tensor in tensors.items():
        if not tensor.is_floating_point():
            continue
        non_finite = int((~torch.isfinite(tensor)).sum())
        if non_finite:
            raise ValueError(
                f"{source}: tensor {name!r} contains {non_finite} NaN or infinite values of "
                f"{tensor.numel()}, so the weights are corrupted or training diverged; load "
                "another checkpoint or retrain"
            )


def _read_cfg_json(cfg_path: Path) -> dict[str, Any]:
    try:
        values = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{cfg_path} is not valid JSON: {error}") from error
    if not isinstance(values, dict):
        raise ValueError(f"{cfg_path} must contain a JSON object, found {type(values).__name__}")
    return values


def sae_config_from_dict(values: dict[str, Any], source: Path | str = "cfg.json") -> SAEConfig:
    """Build an :class:`SAEConfig` from ``cfg.json`` contents.

    ``source`` names the file in error messages.
    """
    unknown = sorted(set(values) - KNOWN_CFG_KEYS)
    if unknown:
        raise ValueError(
            f"{source}: unknown keys {unknown}; known keys are {sorted(KNOWN_CFG_KEYS)}"
        )
    for key in ("d_in", "d_sae", "architecture"):
        if key not in values:
            raise ValueError(f"{source}: required key {key!r} is missing")

    architecture = values["architecture"]
    if architecture not in ARCHITECTURE_FROM_FILE:
        raise ValueError(
            f"{source}: architecture {architecture!r} is not supported; "
            f"expected one of {sorted(ARCHITECTURE_FROM_FILE)}"
        )
    for key in ("normalize_activations", "reshape_activations"):
        if values.get(key, "none") != "none":
            raise ValueError(
                f"{source}: {key}={values[key]!r} is not supported; expected 'none' "
                f"(fold any normalisation into the weights before saving)"
            )

    metadata = values.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise ValueError(f"{source}: 'metadata' must be a JSON object, found {metadata!r}")
    names = {
        key: _top_level_or_metadata(values, metadata, key, source)
        for key in ("hook_name", "model_name")
    }
    try:
        return SAEConfig(
            d_in=values["d_in"],
            d_sae=values["d_sae"],
            architecture=ARCHITECTURE_FROM_FILE[architecture],
            k=values.get("k") if architecture == "topk" else None,
            dtype=values.get("dtype", "float32"),
            apply_b_dec_to_input=values.get("apply_b_dec_to_input", True),
            **names,
            **_jumprelu_settings(metadata, architecture),
        )
    except (TypeError, ValueError) as error:
        raise ValueError(f"{source}: {error}") from error


def _jumprelu_settings(metadata: dict[str, Any], architecture: str) -> dict[str, Any]:
    """The JumpReLU training settings stored in ``metadata``; SAELens's files have none."""
    if architecture != "jumprelu":
        return {}
    return {key: metadata[key] for key in JUMPRELU_METADATA if key in metadata}


def _top_level_or_metadata(
    values: dict[str, Any], metadata: dict[str, Any], key: str, source: Path | str
) -> str:
    top, nested = values.get(key), metadata.get(key)
    if top is not None and nested is not None and top != nested:
        raise ValueError(
            f"{source}: {key} is {top!r} at the top level but {nested!r} in metadata; "
            f"make them agree"
        )
    return top if top is not None else (nested or "")


def _check_tensors(
    tensors: dict[str, torch.Tensor],
    sae: SparseAutoencoder,
    file_cfg: SAEConfig,
    weights_path: Path,
) -> None:
    """Check key set and shapes against ``sae`` and dtypes against ``file_cfg``.

    Raises ``ValueError`` naming the file, the tensor and the expected and found values.
    """
    expected = {name: getattr(sae, name) for name in ARCHITECTURE_WEIGHTS[file_cfg.architecture]}
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{weights_path}: tensor keys do not match the config; missing {missing}, "
            f"unexpected {unexpected}, expected exactly {sorted(expected)}"
        )
    for name, parameter in expected.items():
        found = tensors[name]
        if found.shape != parameter.shape:
            raise ValueError(
                f"{weights_path}: tensor {name!r} has shape {tuple(found.shape)}, expected "
                f"{tuple(parameter.shape)} from d_in={sae.cfg.d_in}, d_sae={sae.cfg.d_sae}"
            )
        allowed = {file_cfg.torch_dtype}
        if name in FLOAT32_WEIGHTS:
            allowed.add(torch.float32)
        if found.dtype not in allowed:
            raise ValueError(
                f"{weights_path}: tensor {name!r} has dtype {found.dtype}, expected "
                f"{file_cfg.torch_dtype} from dtype={file_cfg.dtype!r} in {CFG_FILENAME}"
            )
