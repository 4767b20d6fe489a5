"""Read EleutherAI sparsify folders: ``cfg.json`` and ``sae.safetensors``.

Checked against sparsify's ``SparseCoder.save_to_disk`` and ``SparseCoderConfig``. ``cfg.json``
contains the coder config plus ``d_in``. The weights are ``encoder.weight`` ``[d_sae, d_in]`` (an
``nn.Linear``), ``encoder.bias`` ``[d_sae]``, ``W_dec`` ``[d_sae, d_in]`` and ``b_dec``
``[d_in]``. ``W_dec`` already has saehooks's layout and is copied as it is; only the encoder is
transposed. sparsify subtracts ``b_dec`` before encoding and keeps the k largest of the ReLU'd
pre-activations, which is saehooks's TopK.

The config has no dtype, so the SAE keeps the dtype of the file (often bfloat16) unless the
caller asks for another. It names no hook either: the folder name is the host module's path, and
``layers.N`` (a decoder layer's output) becomes ``blocks.N.hook_resid_post``; pass ``hook_name``
for any other module.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import torch

from saehooks.io.checked import (
    TensorSpec,
    assemble,
    check_tensors,
    read_json_object,
    read_safetensors,
    require_file,
    settle_dtype,
)
from saehooks.sae.config import SAEConfig
from saehooks.sae.sparse_autoencoder import SparseAutoencoder

logger = logging.getLogger(__name__)

CFG_FILENAME = "cfg.json"
WEIGHTS_FILENAME = "sae.safetensors"
LAYOUT = "sparsify"
KNOWN_KEYS = frozenset(
    {
        "activation", "expansion_factor", "normalize_decoder", "num_latents", "k",
        "multi_topk", "skip_connection", "transcode", "d_in",
    }
)  # fmt: skip
RESIDUAL_LAYER = re.compile(r"(?:model\.)?layers\.(\d+)")


def load_sparsify(
    folder: str | Path,
    device: torch.device | str = "cpu",
    dtype: str | None = None,
    hook_name: str | None = None,
    model_name: str = "",
) -> SparseAutoencoder:
    """Load a sparsify SAE folder as a TopK SAE.

    Args:
        folder: a folder with ``cfg.json`` and ``sae.safetensors``.
        device: where the parameters live.
        dtype: cast the parameters to this dtype; ``None`` keeps the file's dtype.
        hook_name: the host hook the SAE reads; ``None`` derives it from the folder name.
        model_name: the host model, which sparsify stores outside the SAE folder.

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: the config has an unknown key or activation or a setting saehooks cannot
            reproduce (skip connection, transcoder), or the weights disagree with it.
    """
    folder = Path(folder)
    cfg_path = require_file(folder / CFG_FILENAME, LAYOUT)
    weights_path = require_file(folder / WEIGHTS_FILENAME, LAYOUT)
    values = read_json_object(cfg_path)
    d_in, d_sae, k = sparsify_shape(values, cfg_path)

    tensors = read_safetensors(weights_path)
    specs = [
        TensorSpec("encoder.weight", (d_sae, d_in)),
        TensorSpec("encoder.bias", (d_sae,)),
        TensorSpec("W_dec", (d_sae, d_in)),
        TensorSpec("b_dec", (d_in,)),
    ]
    check_tensors(tensors, specs, weights_path)
    file_dtype = settle_dtype(None, tensors, specs, weights_path)

    cfg = SAEConfig(
        d_in=d_in,
        d_sae=d_sae,
        architecture="topk",
        k=k,
        dtype=file_dtype,
        apply_b_dec_to_input=True,
        hook_name=hook_name if hook_name is not None else hook_from_folder(folder),
        model_name=model_name,
    )
    ours = {
        "W_enc": tensors["encoder.weight"].T,  # [d_in, d_sae]
        "b_enc": tensors["encoder.bias"],
        "W_dec": tensors["W_dec"],  # [d_sae, d_in], stored that way
        "b_dec": tensors["b_dec"],
    }
    sae = assemble(cfg, ours, device, dtype)
    logger.info("loaded sparsify SAE (d_sae=%d, k=%d) from %s", d_sae, k, folder)
    return sae


def sparsify_shape(values: dict[str, Any], source: Path) -> tuple[int, int, int]:
    """Check a sparsify config and return ``(d_in, d_sae, k)``."""
    unknown = sorted(set(values) - KNOWN_KEYS)
    if unknown:
        raise ValueError(f"{source}: unknown keys {unknown}; known keys are {sorted(KNOWN_KEYS)}")
    activation = values.get("activation", "topk")
    if activation != "topk":
        raise ValueError(
            f"{source}: activation {activation!r} is not supported; saehooks reads sparsify's "
            "'topk' coders only and never falls back to ReLU"
        )
    for key in ("skip_connection", "transcode"):
        if values.get(key, False):
            raise ValueError(f"{source}: {key}=true is not supported; load a plain TopK SAE")
    d_in = values.get("d_in")
    if not isinstance(d_in, int) or d_in < 1:
        raise ValueError(f"{source}: 'd_in' must be a positive integer, found {d_in!r}")
    d_sae = values.get("num_latents") or d_in * values.get("expansion_factor", 32)
    k = values.get("k", 32)
    if not isinstance(k, int) or not 1 <= k <= d_sae:
        raise ValueError(f"{source}: k={k!r} is invalid; use 1 <= k <= {d_sae}")
    return d_in, int(d_sae), k


def hook_from_folder(folder: Path) -> str:
    """TransformerLens hook name of a sparsify hookpoint folder, or '' when not a layer output."""
    match = RESIDUAL_LAYER.fullmatch(folder.resolve().name)
    if match is None:
        logger.warning(
            "cannot tell the hook of sparsify folder %s; pass hook_name to load_sparsify", folder
        )
        return ""
    return f"blocks.{match.group(1)}.hook_resid_post"

