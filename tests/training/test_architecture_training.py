"""Every single-dictionary architecture trains through the Trainer on a planted dictionary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_trainer import D_IN, planted_batches
from torch.testing import assert_close

from saehooks.sae import SAEConfig
from saehooks.training.config import TrainingConfig
from saehooks.training.trainer import Trainer, new_sae

ARCHITECTURES = {
    "batchtopk": {"k": 4},
    "jumprelu": {"k": None},
    "gated": {"k": None},
    "matryoshka": {"k": 4, "matryoshka_widths": (8, 24, 48)},
}


def train(architecture: str, tmp_path: Path, steps: int = 200, **training: object) -> Trainer:
    settings = ARCHITECTURES[architecture]
    sae_cfg = SAEConfig(d_in=D_IN, d_sae=48, architecture=architecture, **settings)
    cfg = TrainingConfig(
        total_tokens=steps * 128,
        batch_size=128,
        lr=1e-2,
        l1_coefficient=0.1,
        l0_coefficient=0.05,
        **training,
    )
    trainer = Trainer(new_sae(sae_cfg, seed=0), cfg, tmp_path / "metrics.jsonl", progress=False)
    trainer.initialize(torch.cat(list(planted_batches(4, 256, seed=2))))
    trainer.fit(planted_batches(steps, 128))
    return trainer


def read_metrics(tmp_path: Path) -> list[dict[str, float]]:
    return [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_loss_falls_on_planted_dictionary(architecture: str, tmp_path: Path) -> None:
    train(architecture, tmp_path)
    metrics = read_metrics(tmp_path)
    assert len(metrics) == 200
    first, last = metrics[0], metrics[-1]
    assert last["loss/total"] < 0.2 * first["loss/total"]
    assert last["loss/fvu"] < 0.3
    assert last["sparsity/l0"] < 16


def test_penalties_are_logged_per_architecture(tmp_path: Path) -> None:
    expected = {
        "batchtopk": set(),
        "jumprelu": {"loss/l0_penalty"},
        "gated": {"loss/l1", "loss/gate_aux"},
        "matryoshka": {"loss/matryoshka"},
    }
    for architecture, keys in expected.items():
        folder = tmp_path / architecture
        train(architecture, folder, steps=3)
        logged = {key for key in read_metrics(folder)[-1] if key.startswith("loss/")}
        assert logged - {"loss/total", "loss/mse", "loss/fvu"} == keys, architecture


def test_total_loss_adds_weighted_penalties(tmp_path: Path) -> None:
    trainer = train("gated", tmp_path, steps=40)
    last = read_metrics(tmp_path)[-1]
    # The L1 warm-up has ended (5% of 40 steps), so its coefficient is the configured 0.1.
    expected = last["loss/mse"] + 0.1 * last["loss/l1"] + last["loss/gate_aux"]
    assert last["loss/total"] == pytest.approx(expected, rel=1e-5)
    assert_close(trainer.sae.W_dec.norm(dim=1), torch.ones(48))


def test_tanh_l0_penalty_trains(tmp_path: Path) -> None:
    train("jumprelu", tmp_path, l0_penalty="tanh")
    metrics = read_metrics(tmp_path)
    assert metrics[-1]["loss/fvu"] < 0.3
    assert metrics[-1]["sparsity/l0"] < metrics[0]["sparsity/l0"]


def test_jumprelu_thresholds_learn(tmp_path: Path) -> None:
    trainer = train("jumprelu", tmp_path)
    threshold = trainer.sae.threshold.detach()
    assert threshold.dtype == torch.float32
    assert not torch.equal(threshold, torch.full_like(threshold, 0.1))


def test_batchtopk_threshold_estimate_survives_export(tmp_path: Path) -> None:
    trainer = train("batchtopk", tmp_path)
    assert int(trainer.sae.threshold_updates) == 200
    exported = trainer.export()
    threshold = float(exported.threshold)
    assert threshold == float(trainer.sae.threshold)

    # Held-out batches of the training distribution (the same seed, past the 200 trained on).
    # The threshold is in the units of the pre-activations, which folding the scale leaves alone.
    held_out = list(planted_batches(208, 128))[200:]
    smallest_kept = []
    with torch.no_grad():
        for batch in held_out:
            acts = exported.encode(batch)  # [128, 48], BatchTopK over the batch
            smallest_kept.append(float(acts[acts > 0].min()))
        x = torch.cat(held_out)
        l0_batch = (exported.encode(x) != 0).sum(dim=-1).float().mean()
        l0_tokens = (exported.to_jumprelu().encode(x) != 0).sum(dim=-1).float().mean()
    mean_smallest = sum(smallest_kept) / len(smallest_kept)
    assert abs(threshold - mean_smallest) < 0.1 * mean_smallest
    assert l0_batch == 4
    assert 3.5 <= l0_tokens <= 4.5
