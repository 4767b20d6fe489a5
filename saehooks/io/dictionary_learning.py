"""Read dictionary_learning folders: ``ae.pt`` and ``config.json``.

Checked against dictionary_learning's ``dictionary.py`` and ``trainers/top_k.py``. ``config.json``
contains a ``trainer`` object with ``dict_class``, ``activation_dim`` (d_in), ``dict_size``
(d_sae), ``k`` for TopK and ``lm_name``. ``ae.pt`` is the module's state dict, read here with
``torch.load(weights_only=True)`` only, which never unpickles code. Two classes are read:

- ``AutoEncoder``: ``encoder.weight`` ``[d_sae, d_in]``, ``encoder.bias`` ``[d_sae]``,
  ``decoder.weight`` ``[d_in, d_sae]`` (bias-free) and ``bias`` ``[d_in]``, which is subtracted
  before encoding and added after decoding: saehooks's ReLU SAE with ``b_dec = bias``.
- ``AutoEncoderTopK``: the same encoder and decoder, ``b_dec`` ``[d_in]``, and the buffers ``k``
  (an integer) and ``threshold`` (a scalar used only by its optional thresholded encoding, which
  the loaded TopK SAE does not use).

Both nn.Linear weights are stored ``[out, in]``, so both are transposed. The config states no
dtype: the SAE keeps the file's.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from saehooks.io.checked import (
    TensorSpec,
    assemble,
    check_tensors,
    read_json_object,
    read_torch_state_dict,
    require_file,
    settle_dtype,
)
from saehooks.sae.config import SAEConfig
from saehooks.sae.sparse_autoencoder import SparseAutoencoder

logger = logging.getLogger(__name__)

CFG_FILENAME = "config.json"
WEIGHTS_FILENAME = "ae.pt"
LAYOUT = "dictionary_learning"
DICT_CLASSES = ("AutoEncoder", "AutoEncoderTopK")


def load_dictionary_learning(
    folder: str | Path,
    device: torch.device | str = "cpu",
    dtype: str | None = None,
    hook_name: str = "",
) -> SparseAutoencoder:
    """Load a dictionary_learning SAE folder.

    Args:
        folder: a folder with ``ae.pt`` and ``config.json``.
        device: where the parameters live.
        dtype: cast the parameters to this dtype; ``None`` keeps the file's dtype.
        hook_name: the TransformerLens hook the SAE reads; dictionary_learning records an nnsight
            submodule instead, which saehooks does not translate.

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: the dictionary class is not supported, or the weights are corrupted or
            disagree with the config.
    """
    folder = Path(folder)
    cfg_path = require_file(folder / CFG_FILENAME, LAYOUT)
    weights_path = require_file(folder / WEIGHTS_FILENAME, LAYOUT)
    trainer = _trainer_config(read_json_object(cfg_path), cfg_path)
    dict_class = trainer["dict_class"]
    d_in, d_sae = trainer["activation_dim"], trainer["dict_size"]

    tensors = read_torch_state_dict(weights_path)
    specs = _tensor_specs(dict_class, d_in, d_sae)
    check_tensors(tensors, specs, weights_path)
    file_dtype = settle_dtype(None, tensors, specs, weights_path)
    k = _checked_k(trainer, tensors, weights_path) if dict_class == "AutoEncoderTopK" else None

    cfg = SAEConfig(
        d_in=d_in,
        d_sae=d_sae,
        architecture="topk" if k is not None else "relu",
        k=k,
        dtype=file_dtype,
        apply_b_dec_to_input=True,
        hook_name=hook_name,
        model_name=str(trainer.get("lm_name") or ""),
    )
    ours = {
        "W_enc": tensors["encoder.weight"].T,  # [d_in, d_sae]
        "b_enc": tensors["encoder.bias"],
        "W_dec": tensors["decoder.weight"].T,  # [d_sae, d_in]
        "b_dec": tensors["b_dec" if k is not None else "bias"],
    }
    sae = assemble(cfg, ours, device, dtype)
    logger.info("loaded dictionary_learning %s (d_sae=%d) from %s", dict_class, d_sae, folder)
    return sae


def _trainer_config(values: dict[str, Any], source: Path) -> dict[str, Any]:
    trainer = values.get("trainer")
    if not isinstance(trainer, dict):
        raise ValueError(f"{source}: expected a 'trainer' object, as dictionary_learning writes")
    dict_class = trainer.get("dict_class")
    if dict_class not in DICT_CLASSES:
        raise ValueError(
            f"{source}: dict_class {dict_class!r} is not supported; saehooks reads "
            f"{list(DICT_CLASSES)} and never falls back to ReLU"
        )
    for key in ("activation_dim", "dict_size"):
        if not isinstance(trainer.get(key), int) or trainer[key] < 1:
            raise ValueError(f"{source}: trainer.{key} must be a positive integer")
    return trainer


def _tensor_specs(dict_class: str, d_in: int, d_sae: int) -> list[TensorSpec]:
    specs = [
        TensorSpec("encoder.weight", (d_sae, d_in)),
        TensorSpec("encoder.bias", (d_sae,)),
        TensorSpec("decoder.weight", (d_in, d_sae)),
    ]
    if dict_class == "AutoEncoder":
        return specs + [TensorSpec("bias", (d_in,))]
    return specs + [
        TensorSpec("b_dec", (d_in,)),
        TensorSpec("k", (), floating=False),
        TensorSpec("threshold", (), floating=False),
    ]


def _checked_k(trainer: dict[str, Any], tensors: dict[str, torch.Tensor], source: Path) -> int:
    """k from the state dict's buffer, which must agree with the config's when it has one."""
    stored = tensors["k"]
    if stored.is_floating_point():
        raise ValueError(f"{source}: buffer 'k' must be an integer, found dtype {stored.dtype}")
    k = int(stored.item())
    if trainer.get("k") is not None and trainer["k"] != k:
        raise ValueError(f"{source}: buffer k={k} disagrees with trainer.k={trainer['k']}")
    return k
