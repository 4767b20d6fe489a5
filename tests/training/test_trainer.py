"""The training loop learns a planted sparse dictionary, logs every step and survives Ctrl-C."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch.testing import assert_close

from saehooks.sae import SAEConfig
from saehooks.training.config import TrainingConfig
from saehooks.training.trainer import Trainer, new_sae

D_IN, D_TRUE = 16, 24


def planted_batches(n_batches: int, batch_size: int, seed: int = 1) -> Iterator[torch.Tensor]:
    """Inputs that are sparse combinations of a fixed random dictionary, plus an offset."""
    generator = torch.Generator().manual_seed(seed)
    dictionary = torch.randn(D_TRUE, D_IN, generator=generator)
    offset = torch.randn(D_IN, generator=generator) * 3
    for _ in range(n_batches):
        mask = torch.rand(batch_size, D_TRUE, generator=generator) < 3 / D_TRUE
        coefficients = torch.rand(batch_size, D_TRUE, generator=generator) * mask
        yield (coefficients @ dictionary + offset) * 50.0  # a large raw scale, as in real hosts


def train(cfg: TrainingConfig, sae_cfg: SAEConfig, tmp_path: Path, batches) -> Trainer:
    trainer = Trainer(new_sae(sae_cfg, seed=0), cfg, tmp_path / "metrics.jsonl", progress=False)
    trainer.initialize(torch.cat(list(planted_batches(4, 256, seed=2))))
    trainer.fit(batches)
    return trainer


@pytest.mark.parametrize("architecture,k", [("topk", 4), ("relu", None)])
def test_trainer_learns_planted_dictionary(
    architecture: str, k: int | None, tmp_path: Path
) -> None:
    sae_cfg = SAEConfig(d_in=D_IN, d_sae=48, architecture=architecture, k=k)
    cfg = TrainingConfig(total_tokens=300 * 128, batch_size=128, lr=1e-2, l1_coefficient=0.1)
    train(cfg, sae_cfg, tmp_path, planted_batches(400, 128))

    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 300
    first, last = json.loads(lines[0]), json.loads(lines[-1])
    assert first["loss/fvu"] > 1.0
    assert last["loss/fvu"] < 0.3
    assert last["tokens"] == 300 * 128


def test_exported_sae_works_on_raw_inputs(tmp_path: Path) -> None:
    sae_cfg = SAEConfig(d_in=D_IN, d_sae=48, architecture="topk", k=4)
    cfg = TrainingConfig(total_tokens=50 * 128, batch_size=128, lr=3e-3)
    trainer = train(cfg, sae_cfg, tmp_path, planted_batches(50, 128))
    exported = trainer.export()
    raw = next(planted_batches(1, 64, seed=9))
    with torch.no_grad():
        expected = trainer.sae(raw * trainer.scale) / trainer.scale
        assert_close(exported(raw), expected, atol=1e-4, rtol=1e-4)
    assert len(exported.trackers) == 0
    assert trainer.scale != 1.0


def test_optimizer_uses_scheduled_lr(tmp_path: Path) -> None:
    sae_cfg = SAEConfig(d_in=D_IN, d_sae=32, architecture="topk", k=4)
    cfg = TrainingConfig(
        total_tokens=10 * 64, batch_size=64, lr=1e-2, lr_warmup_steps=4, lr_decay_fraction=0.5
    )
    trainer = Trainer(new_sae(sae_cfg, seed=0), cfg, progress=False)
    trainer.initialize(next(planted_batches(1, 256)))
    seen = [trainer.train_step(x)["optim/lr"] for x in planted_batches(10, 64)]
    expected = [2.5e-3, 5e-3, 7.5e-3, 1e-2, 1e-2, 1e-2, 8e-3, 6e-3, 4e-3, 2e-3]
    assert seen == pytest.approx(expected)


def test_ctrl_c_stops_cleanly_and_keeps_progress(tmp_path: Path) -> None:
    def interrupted_after_five() -> Iterator[torch.Tensor]:
        for step, x in enumerate(planted_batches(100, 64)):
            if step == 5:
                raise KeyboardInterrupt
            yield x

    sae_cfg = SAEConfig(d_in=D_IN, d_sae=32, architecture="topk", k=4)
    cfg = TrainingConfig(total_tokens=100 * 64, batch_size=64)
    trainer = Trainer(new_sae(sae_cfg, seed=0), cfg, tmp_path / "m.jsonl", progress=False)
    trainer.initialize(next(planted_batches(1, 256)))
    before = trainer.sae.W_enc.detach().clone()
    result = trainer.fit(interrupted_after_five())
    assert result.interrupted
    assert result.steps == 5
    assert len((tmp_path / "m.jsonl").read_text().splitlines()) == 5
    assert not torch.equal(trainer.export().W_enc, before)


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_signal_inside_step_finishes_step(signal_number: int, tmp_path: Path) -> None:
    sae_cfg = SAEConfig(d_in=D_IN, d_sae=32, architecture="topk", k=4)
    cfg = TrainingConfig(total_tokens=100 * 64, batch_size=64)
    trainer = Trainer(new_sae(sae_cfg, seed=0), cfg, tmp_path / "m.jsonl", progress=False)
    trainer.initialize(next(planted_batches(1, 256)))
    forward_calls = 0

    def signal_on_third_forward(module, inputs, output) -> None:
        nonlocal forward_calls
        forward_calls += 1
        if forward_calls == 3:
            signal.raise_signal(signal_number)

    # The signal arrives in the middle of step 3, before its backward pass and optimizer update.
    trainer.sae.register_forward_hook(signal_on_third_forward)
    previous_term = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        result = trainer.fit(planted_batches(100, 64))
    finally:
        signal.signal(signal.SIGTERM, previous_term)

    assert result.interrupted
    assert result.steps == 3
    assert trainer.optimizer.state[trainer.sae.W_enc]["step"].item() == 3
    lines = (tmp_path / "m.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_topk_decoder_rows_stay_unit_norm(tmp_path: Path) -> None:
    sae_cfg = SAEConfig(d_in=D_IN, d_sae=32, architecture="topk", k=4)
    trainer = train(
        TrainingConfig(total_tokens=640, batch_size=64), sae_cfg, tmp_path, planted_batches(10, 64)
    )
    assert_close(trainer.sae.W_dec.norm(dim=1), torch.ones(32))


def test_b_dec_initialised_from_sample() -> None:
    sample = next(planted_batches(1, 512))
    for method in ("mean", "geometric_median", "zeros"):
        cfg = TrainingConfig(b_dec_init=method, normalize_activations=False)
        sae_cfg = SAEConfig(d_in=D_IN, d_sae=32, architecture="topk", k=4)
        trainer = Trainer(new_sae(sae_cfg, seed=0), cfg, progress=False)
        trainer.initialize(sample)
        if method == "mean":
            assert_close(trainer.sae.b_dec.detach(), sample.mean(dim=0))
        elif method == "zeros":
            assert torch.count_nonzero(trainer.sae.b_dec) == 0
        else:
            assert not torch.allclose(trainer.sae.b_dec.detach(), sample.mean(dim=0))


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match="b_dec_init='median'"):
        TrainingConfig(b_dec_init="median")  # type: ignore[arg-type]  # invalid on purpose
    with pytest.raises(ValueError, match="lr_decay_fraction=1.5"):
        TrainingConfig(lr_decay_fraction=1.5)


def test_batch_larger_than_budget_raises() -> None:
    with pytest.raises(ValueError, match="batch_size=64 exceeds total_tokens=63"):
        TrainingConfig(total_tokens=63, batch_size=64)
    assert TrainingConfig(total_tokens=64, batch_size=64).total_steps == 1
    assert TrainingConfig(total_tokens=127, batch_size=64).total_steps == 1


def test_l1_coefficient_warms_up_in_training(tmp_path: Path) -> None:
    sae_cfg = SAEConfig(d_in=D_IN, d_sae=32, architecture="relu", k=None)
    cfg = TrainingConfig(
        total_tokens=20 * 64, batch_size=64, l1_coefficient=4.0, l1_warmup_fraction=0.2
    )
    trainer = Trainer(new_sae(sae_cfg, seed=0), cfg, progress=False)
    trainer.initialize(next(planted_batches(1, 256)))
    metrics = [trainer.train_step(x) for x in planted_batches(6, 64)]
    # 20 steps with a 20% warm-up: 4 steps of 1.0, 2.0, 3.0, then 4.0
    assert [m["coefficient/l1"] for m in metrics] == [1.0, 2.0, 3.0, 4.0, 4.0, 4.0]
    assert all(m["loss/l1"] > 0 for m in metrics)
    expected_total = metrics[-1]["loss/mse"] + 4.0 * metrics[-1]["loss/l1"]
    assert metrics[-1]["loss/total"] == pytest.approx(expected_total, rel=1e-5)
