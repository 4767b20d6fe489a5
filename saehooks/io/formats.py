"""Load an SAE folder in any layout saehooks reads, locally or from the Hugging Face Hub.

| format | files | module |
|---|---|---|
| ``saehooks`` | ``cfg.json`` + ``sae_weights.safetensors``, composites too | ``io.native`` |
| ``saelens`` | ``cfg.json`` + ``sae_weights.safetensors`` | ``io.saelens`` |
| ``sparsify`` | ``cfg.json`` + ``sae.safetensors`` | ``io.sparsify`` |
| ``dictionary_learning`` | ``config.json`` + ``ae.pt`` | ``io.dictionary_learning`` |

``format="auto"`` detects the layout from the files present. A folder with
``sae_weights.safetensors`` goes to the native reader when its ``cfg.json`` has only the keys
saehooks writes and its metadata names no ``sae_lens_version``. Any other such folder goes to
the SAELens reader, which accepts every SAELens config version.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import torch

from saehooks.io.checked import read_json_object
from saehooks.io.dictionary_learning import load_dictionary_learning
from saehooks.io.hub import fetch_hub_folder
from saehooks.io.native import KNOWN_CFG_KEYS, load_sae
from saehooks.io.saelens import load_saelens
from saehooks.io.sparsify import load_sparsify
from saehooks.sae.sparse_autoencoder import SparseAutoencoder

Format = Literal["auto", "saehooks", "saelens", "sparsify", "dictionary_learning"]
FORMAT_FILES: dict[str, tuple[str, ...]] = {
    "saehooks": ("cfg.json", "sae_weights.safetensors"),
    "saelens": ("cfg.json", "sae_weights.safetensors"),
    "sparsify": ("cfg.json", "sae.safetensors"),
    "dictionary_learning": ("config.json", "ae.pt"),
}


def detect_format(folder: str | Path) -> str:
    """Name the layout of the SAE folder ``folder`` from the files it contains.

    Raises:
        FileNotFoundError: ``folder`` matches no layout.
    """
    folder = Path(folder)
    if (folder / "ae.pt").is_file():
        return "dictionary_learning"
    if (folder / "sae.safetensors").is_file():
        return "sparsify"
    if (folder / "sae_weights.safetensors").is_file() and (folder / "cfg.json").is_file():
        values = read_json_object(folder / "cfg.json")
        written_by_saelens = "sae_lens_version" in (values.get("metadata") or {})
        native = set(values) <= KNOWN_CFG_KEYS and not written_by_saelens
        native = native or values.get("format") == "saehooks-composite"
        return "saehooks" if native else "saelens"
    raise FileNotFoundError(
        f"no SAE folder at {folder}: expected one of "
        + ", ".join(f"{name} ({' + '.join(files)})" for name, files in FORMAT_FILES.items())
    )


def load_folder(
    folder: str | Path,
    format: Format = "auto",
    device: torch.device | str = "cpu",
    dtype: str | None = None,
    hook_name: str | None = None,
) -> SparseAutoencoder:
    """Load the SAE in ``folder``, whose layout ``format`` names or ``"auto"`` detects.

    ``dtype`` casts the parameters (``None`` keeps the stored dtype). ``hook_name`` sets the hook
    for layouts that do not record it (sparsify, dictionary_learning) and overrides it for the
    others.
    """
    chosen = detect_format(folder) if format == "auto" else format
    if chosen == "sparsify":
        return load_sparsify(folder, device, dtype, hook_name=hook_name)
    if chosen == "dictionary_learning":
        return load_dictionary_learning(folder, device, dtype, hook_name=hook_name or "")
    if chosen == "saelens":
        sae = load_saelens(folder, device, dtype)
    elif chosen == "saehooks":
        sae = load_sae(folder, device, dtype)
    else:
        raise ValueError(f"format={format!r} is unknown; use one of {['auto', *FORMAT_FILES]}")
    if hook_name is not None and hook_name != sae.cfg.hook_name:
        sae.cfg = dataclasses.replace(sae.cfg, hook_name=hook_name)
    return sae


def load_hub(
    repo_id: str,
    folder: str = "",
    format: Format = "saelens",
    revision: str | None = None,
    device: torch.device | str = "cpu",
    dtype: str | None = None,
    hook_name: str | None = None,
    offline: bool | None = None,
) -> SparseAutoencoder:
    """Load an SAE folder from hub repository ``repo_id``, downloading it unless offline.

    ``format`` must be named because the files to fetch depend on it. The other arguments are
    those of :func:`load_folder` and :func:`saehooks.io.hub.fetch_hub_folder`.
    """
    if format not in FORMAT_FILES:
        raise ValueError(f"format={format!r} must be one of {list(FORMAT_FILES)} for hub loading")
    local = fetch_hub_folder(repo_id, folder, FORMAT_FILES[format], revision, offline)
    return load_folder(local, format, device, dtype, hook_name)

