"""Shared fixtures: fixed seeds, and a tiny seeded Llama saved to a folder with a host on it."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from saehooks.hosts import TransformerLensHost


@pytest.fixture(autouse=True)
def fixed_seed() -> None:
    random.seed(0)
    torch.manual_seed(0)


TINY_VOCAB = ["<unk>", "<bos>", "<eos>"] + [f"w{i}" for i in range(61)]
TINY_LAYERS = 4


def save_tiny_llama(folder: Path) -> None:
    """Save a seeded 4-layer Llama (d_model 32, vocab 64) and a word-level tokenizer to ``folder``.

    Hosts load both from the folder, because the TransformerLens bridge rebuilds the
    tokenizer from its ``name_or_path`` and fails for a tokenizer built in memory.
    """
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(TINY_VOCAB)}, "<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<bos>",
        eos_token="<eos>",
        unk_token="<unk>",
        pad_token="<eos>",
    )
    config = LlamaConfig(
        vocab_size=len(TINY_VOCAB),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=TINY_LAYERS,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
        tie_word_embeddings=False,
    )
    torch.manual_seed(1234)
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


@pytest.fixture(scope="session")
def tiny_word_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of 120 text files of 5 to 39 random words of the tiny vocabulary (w0 .. w60)."""
    folder = tmp_path_factory.mktemp("word-corpus")
    generator = torch.Generator().manual_seed(3)
    for index in range(120):
        length = int(torch.randint(5, 40, (1,), generator=generator))
        words = torch.randint(0, 61, (length,), generator=generator)
        (folder / f"doc{index:03d}.txt").write_text(" ".join(f"w{int(w)}" for w in words))
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-llama")
    save_tiny_llama(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_host(tiny_model_dir: Path) -> TransformerLensHost:
    return TransformerLensHost.load(str(tiny_model_dir))
