"""Fixtures for the host tests; the tiny Llama and its host come from tests/conftest.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaForCausalLM

TINY_VOCAB_SIZE = 64  # as built by save_tiny_llama in tests/conftest.py


@pytest.fixture(scope="module")
def reference_model(tiny_model_dir: Path) -> LlamaForCausalLM:
    """An independent HF copy of the tiny model with the eager attention the bridge uses."""
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="eager")
    return model.eval()


@pytest.fixture
def tiny_tokens() -> torch.Tensor:
    """Token ids [3, 9] with BOS (id 1) at position 0 of every row."""
    generator = torch.Generator().manual_seed(7)
    tokens = torch.randint(3, TINY_VOCAB_SIZE, (3, 9), generator=generator)
    tokens[:, 0] = 1
    return tokens
