"""Corpus sources, token packing, the activation buffer and on-disk activation shards."""

from saehooks.data.buffer import ActivationBuffer, HarvestFn, activation_chunks
from saehooks.data.corpus import (
    Corpus,
    hf_corpus,
    jsonl_corpus,
    load_corpus,
    text_files_corpus,
    wiki_corpus,
)
from saehooks.data.shards import ActivationShards, ShardWriter
from saehooks.data.tokens import Split, Tokenizer, TokenStream

__all__ = [
    "ActivationBuffer",
    "ActivationShards",
    "Corpus",
    "HarvestFn",
    "ShardWriter",
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
