"""The registry of pretrained dictionaries: ``pretrained/index.json`` and the SAEs it lists.

Each entry of the index names one SAE: its id, host model, hook, architecture, shape, training
token count and the metrics ``saehooks eval`` measured on it. It also gives the location of the
weights, in one of the layouts ``saehooks.io.load_folder`` reads. That is either a folder beside
the index (``"path"``) or a folder of a Hugging Face Hub repository (``"hub"``, ``"folder"``,
optional ``"revision"``).

The index is looked up in this order:

1. the folder named by the environment variable ``SAEHOOKS_PRETRAINED``;
2. ``pretrained/`` at the root of a source checkout, beside the ``saehooks`` package (also for an
   editable install);
3. ``<prefix>/share/saehooks/pretrained``, where installing a wheel puts the same folder (the
   ``data-files`` table of ``pyproject.toml``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from saehooks.io.formats import FORMAT_FILES, load_folder, load_hub
from saehooks.sae.sparse_autoencoder import SparseAutoencoder

INDEX_FILENAME = "index.json"
ENV_VARIABLE = "SAEHOOKS_PRETRAINED"
METRIC_KEYS = ("l0", "fvu", "ce_loss_recovered")


@dataclass(frozen=True)
class PretrainedEntry:
    """One dictionary listed in the index."""

    id: str
    """Name to load the dictionary by."""
    model: str
    """Host model it was trained on."""
    hook_name: str
    """Host hook point it reads and replaces."""
    architecture: str
    """saehooks architecture name, for example 'topk'."""
    d_in: int
    """Width of the input activation."""
    d_sae: int
    """Number of latents."""
    training_tokens: int
    """Activations it was trained on."""
    metrics: dict[str, float]
    """Evaluation spliced into the host: at least l0, fvu and ce_loss_recovered."""
    weights: dict[str, str]
    """Location: {'path', 'format'} beside the index, or {'hub', 'folder', 'format'}."""
    k: int | None = None
    """Latents kept per token, for TopK."""
    dtype: str = "float32"
    """Dtype of the stored weights."""
    description: str = ""
    """Free-text notes on training and evaluation."""


def index_path() -> Path:
    """Return the path of ``index.json``, searched in the order the module docstring gives.

    Raises:
        FileNotFoundError: no candidate folder contains an index.
    """
    candidates = []
    if os.environ.get(ENV_VARIABLE):
        candidates.append(Path(os.environ[ENV_VARIABLE]))
    candidates.append(Path(__file__).resolve().parents[1] / "pretrained")
    candidates.append(Path(sys.prefix) / "share" / "saehooks" / "pretrained")
    for folder in candidates:
        if (folder / INDEX_FILENAME).is_file():
            return folder / INDEX_FILENAME
    raise FileNotFoundError(
        f"no {INDEX_FILENAME} found in {[str(folder) for folder in candidates]}; set "
        f"{ENV_VARIABLE} to the folder that contains it"
    )


def read_index(path: str | Path | None = None) -> list[PretrainedEntry]:
    """Read and check every entry of the index at ``path`` (default: :func:`index_path`)."""
    path = Path(path) if path is not None else index_path()
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(values, dict) or set(values) - {"about", "dictionaries"}:
        raise ValueError(f"{path} must be an object with 'dictionaries' and optionally 'about'")
    entries = [_entry(item, path) for item in values.get("dictionaries", [])]
    ids = [entry.id for entry in entries]
    duplicates = sorted({name for name in ids if ids.count(name) > 1})
    if duplicates:
        raise ValueError(f"{path}: ids {duplicates} appear more than once")
    return entries


def find(id: str, path: str | Path | None = None) -> PretrainedEntry:
    """Return the index entry named ``id``; raise ``KeyError`` listing the known ids."""
    entries = read_index(path)
    for entry in entries:
        if entry.id == id:
            return entry
    raise KeyError(f"no pretrained dictionary {id!r}; known ids: {[e.id for e in entries]}")


def load(
    id: str,
    device: torch.device | str = "cpu",
    dtype: str | None = None,
    index: str | Path | None = None,
) -> SparseAutoencoder:
    """Load the pretrained dictionary ``id``, ready to splice at ``sae.cfg.hook_name``.

    ``dtype`` casts the parameters (``None`` keeps the stored dtype, float16 for the shipped
    ones). Hub entries download through ``huggingface_hub``, or read its cache when offline.

    Raises:
        KeyError: ``id`` is not in the index.
        ValueError: the loaded SAE disagrees with its index entry.
    """
    index_file = Path(index) if index is not None else index_path()
    entry = find(id, index_file)
    location = entry.weights
    if "path" in location:
        folder = index_file.parent / location["path"]
        sae = load_folder(folder, location["format"], device, dtype, hook_name=entry.hook_name)
    else:
        sae = load_hub(
            location["hub"],
            location.get("folder", ""),
            location["format"],
            location.get("revision"),
            device,
            dtype,
            hook_name=entry.hook_name,
        )
    _check_agrees(entry, sae)
    return sae


def format_index(entries: list[PretrainedEntry]) -> str:
    """Render the entries as a fixed-width table, one row per dictionary."""
    header = ("id", "model", "hook", "arch", "d_sae", "tokens", "L0", "FVU", "CE rec.", "where")
    rows = [header]
    for entry in entries:
        where = entry.weights.get("path") or f"hub:{entry.weights['hub']}"
        arch = f"{entry.architecture} k={entry.k}" if entry.k else entry.architecture
        rows.append(
            (
                entry.id,
                entry.model.split("/")[-1],
                entry.hook_name,
                arch,
                str(entry.d_sae),
                f"{entry.training_tokens:,}",
                f"{entry.metrics['l0']:.1f}",
                f"{entry.metrics['fvu']:.4f}",
                f"{entry.metrics['ce_loss_recovered']:.4f}",
                where,
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    return "\n".join(line.rstrip() for line in lines)


def _entry(item: Any, source: Path) -> PretrainedEntry:
    """Build one entry, raising on missing or unknown keys and on an invalid location."""
    known = {field.name for field in fields(PretrainedEntry)}
    required = {field.name for field in fields(PretrainedEntry) if _is_required(field)}
    if not isinstance(item, dict):
        raise ValueError(f"{source}: each dictionary must be a JSON object, found {item!r}")
    name = item.get("id", "<no id>")
    if set(item) - known or required - set(item):
        raise ValueError(
            f"{source}: entry {name!r} has unknown keys {sorted(set(item) - known)} and lacks "
            f"{sorted(required - set(item))}; valid keys are {sorted(known)}"
        )
    missing_metrics = [key for key in METRIC_KEYS if key not in item["metrics"]]
    if missing_metrics:
        raise ValueError(f"{source}: entry {name!r} lacks metrics {missing_metrics}")
    weights = item["weights"]
    if weights.get("format") not in FORMAT_FILES or ("path" in weights) == ("hub" in weights):
        raise ValueError(
            f"{source}: entry {name!r} needs weights with a 'format' in {list(FORMAT_FILES)} "
            f"and exactly one of 'path' or 'hub', found {weights!r}"
        )
    return PretrainedEntry(**item)


def _is_required(field: dataclasses.Field) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


def _check_agrees(entry: PretrainedEntry, sae: SparseAutoencoder) -> None:
    cfg = sae.cfg
    expected = {"d_in": entry.d_in, "d_sae": entry.d_sae, "architecture": entry.architecture}
    found = {key: getattr(cfg, key) for key in expected}
    if found != expected:
        raise ValueError(
            f"pretrained dictionary {entry.id!r}: the index states {expected} but its weights "
            f"load as {found}; fix the index entry"
        )
