"""Fixtures for the data tests: a real Hugging Face fast tokenizer built offline."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

FILLER_WORDS = [f"w{i}" for i in range(50)]
MARKER_WORDS = [f"doc{i}" for i in range(200)]


def build_word_tokenizer(eos_token: str = "<eos>") -> PreTrainedTokenizerFast:
    """Build a whitespace word-level tokenizer whose post-processor prepends BOS.

    Ids: <unk> 0, <bos> 1, <eos> 2, then w0..w49 from 3, then doc0..doc199 from 53.
    """
    vocab = {"<unk>": 0, "<bos>": 1, "<eos>": 2}
    for word in FILLER_WORDS + MARKER_WORDS:
        vocab[word] = len(vocab)
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", 1)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<bos>", eos_token=eos_token, unk_token="<unk>"
    )


@pytest.fixture
def word_tokenizer() -> PreTrainedTokenizerFast:
    return build_word_tokenizer()


@pytest.fixture
def make_word_tokenizer() -> Callable[..., PreTrainedTokenizerFast]:
    return build_word_tokenizer
