"""Corpus sources, token packing and the activation buffer."""

from saehooks.data.buffer import ActivationBuffer, HarvestFn, activation_chunks
from saehooks.data.corpus import (
    Corpus,
    hf_corpus,
    jsonl_corpus,
    load_corpus,
    text_files_corpus,
    wiki_corpus,
)
from saehooks.data.tokens import Split, Tokenizer, TokenStream

__all__ = [
    "ActivationBuffer",
    "Corpus",
    "HarvestFn",
    "Split",
    "TokenStream",
    "Tokenizer",
    "activation_chunks",
    "hf_corpus",
    "jsonl_corpus",
    "load_corpus",
    "text_files_corpus",
    "wiki_corpus",
]
