"""The files the other libraries read: the host model folder and the training text."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from transformers import AutoTokenizer

from saehooks.data import TokenStream, load_corpus
from saehooks.hosts.smollm2 import default_model_dir


def model_folder() -> Path:
    """Return the local SmolLM2 safetensors folder, converting the shipped GGUF on first use."""
    return default_model_dir()


def write_training_text(path: Path, context_size: int, eval_fraction: float) -> int:
    """Write the wiki documents that ``saehooks train`` trains on to ``path`` as JSON lines.

    The documents are the training split of the saehooks token stream with the default seed,
    in its order, so no library trains on the held-out documents the evaluator scores. Each line is
    ``{"text": ...}``. The file is written under a temporary name and renamed. Returns the
    number of documents.
    """
    tokenizer = AutoTokenizer.from_pretrained(str(model_folder()))
    stream = TokenStream(
        load_corpus("wiki"),
        tokenizer,
        context_size=context_size,
        bos_token_id=tokenizer.bos_token_id,
        eval_fraction=eval_fraction,
    )
    documents = stream.documents("train")

    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            for text in documents:
                file.write(json.dumps({"text": text}) + "\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return len(documents)
