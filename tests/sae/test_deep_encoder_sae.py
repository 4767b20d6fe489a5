"""The deep encoder computes its hidden layer, starts as a tied TopK SAE, and folds exactly."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from saehooks.sae.config import SAEConfig
from saehooks.sae.deep import DeepConfig, DeepEncoderSAE
from saehooks.sae.sparse_autoencoder import SparseAutoencoder


def test_hand_set_hidden_layer() -> None:
    sae = DeepEncoderSAE(DeepConfig(d_in=2, d_sae=2, k=1, d_hidden=2))
    with torch.no_grad():
        sae.b_dec.zero_()
        sae.W_hidden.copy_(torch.eye(2))
        sae.b_hidden.zero_()
        sae.W_enc.copy_(torch.tensor([[2.0, 1.0], [5.0, 5.0]]))
        sae.b_enc.zero_()
        sae.W_dec.copy_(torch.tensor([[1.0, 1.0], [0.0, 1.0]]))
        x = torch.tensor([[1.0, -2.0]])
        # hidden = relu(1, -2) = (1, 0); pre_acts = (2, 1); TopK keeps 2 on latent 0.
        # Without the ReLU, pre_acts would be (-8, -9) and no latent would fire.
        assert_close(sae.encode(x), torch.tensor([[2.0, 0.0]]))
        assert_close(sae(x), torch.tensor([[2.0, 2.0]]))


@pytest.mark.parametrize("d_hidden", [None, 24])
def test_starts_as_tied_topk_sae(d_hidden: int | None) -> None:
    deep = DeepEncoderSAE(DeepConfig(d_in=8, d_sae=32, k=4, d_hidden=d_hidden))
    tied = SparseAutoencoder(SAEConfig(d_in=8, d_sae=32, k=4))
    with torch.no_grad():
        tied.W_dec.copy_(deep.W_dec)
        tied.W_enc.copy_(deep.W_dec.T)
        x = torch.randn(64, 8)
        assert_close(deep.encode(x), tied.encode(x), atol=1e-5, rtol=1e-5)
    assert_close(deep.W_dec.norm(dim=1), torch.ones(32))


def test_narrow_hidden_layer_projects() -> None:
    deep = DeepEncoderSAE(DeepConfig(d_in=8, d_sae=32, k=4, d_hidden=6))
    directions = deep.W_hidden[:, :3].detach()  # [d_in, 3], orthonormal columns
    assert_close(directions.T @ directions, torch.eye(3), atol=1e-6, rtol=0)
    with torch.no_grad():
        x = torch.randn(16, 8)
        pre_acts = torch.relu(x @ deep.W_hidden) @ deep.W_enc  # [16, d_sae]
        assert_close(pre_acts, x @ directions @ directions.T @ deep.W_dec.T, atol=1e-5, rtol=0)


def test_three_d_input_and_hooks() -> None:
    sae = DeepEncoderSAE(DeepConfig(d_in=8, d_sae=32, k=4))
    shapes: dict[str, torch.Size] = {}
    handles = [
        getattr(sae, name).register_forward_hook(
            lambda module, inputs, output, name=name: shapes.__setitem__(name, output.shape)
        )
        for name in ("hook_input", "hook_hidden", "hook_pre_acts", "hook_acts", "hook_x_hat")
    ]
    try:
        with torch.no_grad():
            x = torch.randn(2, 3, 8)
            assert_close(sae(x), sae(x.reshape(6, 8)).reshape(2, 3, 8))
    finally:
        for handle in handles:
            handle.remove()
    assert shapes == {
        "hook_input": torch.Size([6, 8]),
        "hook_hidden": torch.Size([6, 16]),
        "hook_pre_acts": torch.Size([6, 32]),
        "hook_acts": torch.Size([6, 32]),
        "hook_x_hat": torch.Size([6, 8]),
    }


def test_fold_input_scale_is_exact() -> None:
    sae = DeepEncoderSAE(DeepConfig(d_in=8, d_sae=32, k=4, dtype="float64"))
    with torch.no_grad():
        sae.b_dec.copy_(torch.randn(8, dtype=torch.float64))
        sae.b_hidden.copy_(torch.randn(16, dtype=torch.float64))
        x = torch.randn(16, 8, dtype=torch.float64)
        expected = sae(x * 7.0) / 7.0
        sae.fold_input_scale(7.0)
        assert_close(sae(x), expected)


def test_gate_multiplies_acts() -> None:
    sae = DeepEncoderSAE(DeepConfig(d_in=8, d_sae=32, k=4))
    x = torch.randn(2, 3, 8)
    gate = torch.tensor([0.0, 2.0]).reshape(2, 1, 1)  # broadcasts to [2, 3, 32]
    with torch.no_grad():
        acts = sae.encode(x)
        gated = sae.encode(x, gate)
    assert_close(gated[0], torch.zeros(3, 32))
    assert_close(gated[1], 2.0 * acts[1])


@pytest.mark.parametrize(
    "values,message",
    [({"k": 33}, "k=33 is invalid"), ({"d_hidden": 7}, "d_hidden=7 must be an even number")],
)
def test_config_errors_name_the_field(values: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DeepConfig(**{"d_in": 8, "d_sae": 32, **values})
