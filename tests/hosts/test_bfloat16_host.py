"""Hosts that run the model in bfloat16 and hand float32 activations to the SAE."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.testing import assert_close

from saehooks.hosts import BACKENDS, load_host
from saehooks.sae import SAEConfig, SparseAutoencoder
from saehooks.training.config import DataConfig, TrainingConfig
from saehooks.training.pipeline import load_training_host, train_sae

HOOKS = ["blocks.1.hook_resid_post", "blocks.2.hook_mlp_out"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_bfloat16_host_harvests_float32(
    backend: str, tiny_model_dir: Path, tiny_tokens: torch.Tensor
) -> None:
    reference = load_host(str(tiny_model_dir), backend=backend)
    host = load_host(
        str(tiny_model_dir), dtype=torch.bfloat16, backend=backend, activation_dtype=torch.float32
    )
    expected = reference.harvest(tiny_tokens, HOOKS)
    harvested = host.harvest(tiny_tokens, HOOKS)
    for name in HOOKS:
        assert expected[name].dtype == torch.float32
        assert harvested[name].dtype == torch.float32
        assert not harvested[name].is_inference()
        # bfloat16 keeps 8 significant bits, so relative errors of a few 1e-3 build up per layer.
        error = (harvested[name] - expected[name]).norm() / expected[name].norm()
        assert error < 0.02, f"{name}: relative error {error:.4f} of the bfloat16 host"
        assert not torch.equal(harvested[name], expected[name])  # the model really ran in bf16


@pytest.mark.parametrize("backend", BACKENDS)
def test_bfloat16_host_without_cast_keeps_model_dtype(
    backend: str, tiny_model_dir: Path, tiny_tokens: torch.Tensor
) -> None:
    host = load_host(str(tiny_model_dir), dtype=torch.bfloat16, backend=backend)
    assert host.harvest(tiny_tokens, HOOKS[:1])[HOOKS[0]].dtype == torch.bfloat16


def test_bfloat16_host_splices_float32_sae(tiny_model_dir: Path, tiny_tokens: torch.Tensor) -> None:
    data_cfg = DataConfig(model=str(tiny_model_dir), context_size=16, host_dtype="bfloat16")
    host = load_training_host(data_cfg)
    sae = SparseAutoencoder(SAEConfig(d_in=32, d_sae=64, k=4, hook_name=HOOKS[0]))
    clean = host.logits(tiny_tokens)
    with host.splice_saes([sae], use_error_term=True):
        spliced = host.logits(tiny_tokens)
    assert clean.dtype == torch.bfloat16
    assert_close(spliced, clean)  # the error term restores the activation exactly


def test_data_config_rejects_unknown_host_dtype() -> None:
    with pytest.raises(ValueError, match="host_dtype='float16' is invalid"):
        DataConfig(host_dtype="float16")  # type: ignore[arg-type]  # the invalid value under test


def test_train_sae_on_bfloat16_host(tiny_model_dir: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(
        "\n\n".join(" ".join(f"w{(i * j) % 61}" for j in range(40)) for i in range(30))
    )
    data_cfg = DataConfig(
        model=str(tiny_model_dir),
        hook_name=HOOKS[0],
        corpus=str(corpus),
        context_size=16,
        harvest_batch_size=4,
        buffer_tokens=256,
        eval_fraction=0.1,
        host_dtype="bfloat16",
    )
    train_cfg = TrainingConfig(total_tokens=512, batch_size=64, lr_warmup_steps=0)
    outcome = train_sae(
        SAEConfig(d_in=32, d_sae=64, k=4), data_cfg, train_cfg, tmp_path / "run", progress=False
    )
    assert outcome.result.tokens == 512
    run = (outcome.run_dir / "run.json").read_text()
    assert '"host_dtype": "bfloat16"' in run
