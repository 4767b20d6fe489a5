"""Each composite SAE trains through the ordinary Trainer and learns a planted dictionary."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch.testing import assert_close

from saehooks.sae import (
    CompositeConfig,
    DeepConfig,
    HierarchicalConfig,
    HierarchicalSAE,
    MixtureConfig,
    MixtureOfExperts,
    child_usage,
)
from saehooks.trackers import LoadBalance
from saehooks.training.config import TrainingConfig
from saehooks.training.trainer import Trainer, new_sae

D_IN, D_TRUE, STEPS = 16, 24, 100
CONFIGS: dict[str, CompositeConfig] = {
    "moe": MixtureConfig(d_in=D_IN, d_sae=48, n_experts=4, experts_per_token=2, k=3),
    "hierarchical": HierarchicalConfig(d_in=D_IN, d_sae=12 * 4, child_size=3, k=3, child_k=1),
    "deep": DeepConfig(d_in=D_IN, d_sae=48, k=4),
}


def planted(n_batches: int, batch_size: int, seed: int = 1) -> Iterator[torch.Tensor]:
    """Sparse combinations of a random dictionary fixed by ``seed``, plus an offset, scaled up."""
    generator = torch.Generator().manual_seed(seed)
    dictionary = torch.randn(D_TRUE, D_IN, generator=generator)
    offset = torch.randn(D_IN, generator=generator) * 3
    for _ in range(n_batches):
        mask = torch.rand(batch_size, D_TRUE, generator=generator) < 3 / D_TRUE
        coefficients = torch.rand(batch_size, D_TRUE, generator=generator) * mask
        yield (coefficients @ dictionary + offset) * 50.0


def train(sae_cfg: CompositeConfig, metrics_path: Path) -> Trainer:
    cfg = TrainingConfig(total_tokens=STEPS * 128, batch_size=128, lr=1e-2, lr_warmup_steps=10)
    trainer = Trainer(new_sae(sae_cfg, seed=0), cfg, metrics_path, progress=False)
    trainer.initialize(torch.cat(list(planted(4, 256, seed=2))))
    trainer.fit(planted(STEPS, 128))
    return trainer


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Trainer, list[dict]]]:
    """Every composite trained once on the same planted data, with its metric lines."""
    runs = {}
    for architecture, sae_cfg in CONFIGS.items():
        metrics_path = tmp_path_factory.mktemp(architecture) / "metrics.jsonl"
        trainer = train(sae_cfg, metrics_path)
        lines = [json.loads(line) for line in metrics_path.read_text().splitlines()]
        runs[architecture] = (trainer, lines)
    return runs


def expert_share(sae: MixtureOfExperts, scale: float) -> torch.Tensor:
    """Fraction of the routing slots each expert receives on training-distribution inputs."""
    with torch.no_grad():
        x = next(planted(1, 512)) * scale
        probs = sae.route(x - sae.b_dec)  # [512, n_experts]
    chosen = probs.topk(sae.cfg.experts_per_token, dim=-1).indices.flatten()
    return torch.bincount(chosen, minlength=sae.cfg.n_experts).float() / chosen.numel()


@pytest.mark.parametrize("architecture", sorted(CONFIGS))
def test_loss_falls_on_planted_data(architecture: str, trained: dict) -> None:
    trainer, lines = trained[architecture]
    assert len(lines) == STEPS
    first = sum(line["loss/fvu"] for line in lines[:10]) / 10
    last = sum(line["loss/fvu"] for line in lines[-10:]) / 10
    assert first > 1.0
    assert last < 0.5
    assert_close(trainer.sae.W_dec.norm(dim=1), torch.ones(48))


@pytest.mark.parametrize("architecture", sorted(CONFIGS))
def test_export_folds_input_scale(architecture: str, trained: dict) -> None:
    trainer, _ = trained[architecture]
    exported = trainer.export()
    assert type(exported) is type(trainer.sae)
    assert len(exported.trackers) == 0
    raw = next(planted(1, 64, seed=9))
    with torch.no_grad():
        expected = trainer.sae(raw * trainer.scale) / trainer.scale
        assert_close(exported(raw), expected, atol=1e-3, rtol=1e-4)


def test_mixture_spreads_tokens_over_experts(trained: dict) -> None:
    trainer, lines = trained["moe"]
    assert isinstance(trainer.sae, MixtureOfExperts)
    assert isinstance(trainer.sae.trackers["balance"], LoadBalance)
    assert all("loss/balance" in line for line in lines)
    assert lines[-1]["coefficient/balance"] == 1.0
    share = expert_share(trainer.sae, trainer.scale)
    assert (share > 0.15).all(), share


def test_mixture_without_balance_loss_collapses(tmp_path: Path) -> None:
    sae_cfg = dataclasses.replace(CONFIGS["moe"], balance_coefficient=0.0)
    trainer = train(sae_cfg, tmp_path / "metrics.jsonl")
    share = expert_share(trainer.sae, trainer.scale)  # type: ignore[arg-type]  # a mixture
    assert share.sort(descending=True).values[:2].sum() > 0.95, share


def test_hierarchical_children_learn(trained: dict) -> None:
    trainer, _ = trained["hierarchical"]
    assert isinstance(trainer.sae, HierarchicalSAE)
    initial = new_sae(CONFIGS["hierarchical"], seed=0)
    usage = child_usage(trainer.sae, initial, trainer.fires.ever_fired)
    assert usage.total == 12
    assert usage.learned >= 6
    assert usage.learned <= min(usage.fired, usage.moved)
