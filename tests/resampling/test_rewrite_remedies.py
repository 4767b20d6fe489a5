"""Weight-editing remedies rewrite exactly the dead latents they choose, on their schedule."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from conftest import BATCH, D_IN, D_SAE, DEAD, batches
from torch.testing import assert_close

from saehooks.resampling.latents import latent_parameters
from saehooks.resampling.rewrite import ENCODER_SCALE, draw_proportional
from saehooks.sae import SAEConfig, SparseAutoencoder
from saehooks.training.trainer import Trainer

MOMENTS = ("exp_avg", "exp_avg_sq")


def fill_moments(trainer: Trainer, seed: int = 11) -> None:
    """Give every Adam moment a distinct positive value, so that a reset shows."""
    generator = torch.Generator().manual_seed(seed)
    for state in trainer.optimizer.state.values():
        for key in MOMENTS:
            state[key].copy_(torch.rand(state[key].shape, generator=generator) + 0.5)


def snapshot(trainer: Trainer) -> dict[str, torch.Tensor]:
    values = {name: p.detach().clone() for name, p in trainer.sae.named_parameters()}
    for name, parameter in trainer.sae.named_parameters():
        state = trainer.optimizer.state[parameter]
        for key in MOMENTS:
            values[f"{name}.{key}"] = state[key].clone()
        values[f"{name}.step"] = torch.as_tensor(state["step"]).clone()
    return values


def run_to_event(trainer: Trainer) -> dict[str, torch.Tensor]:
    """Train two steps (16 tokens fill the dead window), then stage the step-3 event."""
    for x in batches(2):
        trainer.train_step(x)
    fill_moments(trainer)
    before = snapshot(trainer)
    trainer.step_count = 3  # the remedy's interval is 3; nothing else reads the counter here
    return before


def latent_slices(name: str, latent: int) -> tuple[slice | int, ...]:
    """Index of ``latent``'s entries in parameter ``name`` (or its moments)."""
    if name.startswith("W_enc"):
        return (slice(None), latent)
    return (latent,)


def assert_only_latents_changed(
    before: dict[str, torch.Tensor], after: dict[str, torch.Tensor], changed: list[int]
) -> None:
    for name, old in before.items():
        new = after[name]
        if name.startswith("b_dec") or name.endswith(".step"):
            assert torch.equal(new, old), name
            continue
        keep_mask = torch.ones_like(old, dtype=torch.bool)
        for latent in changed:
            keep_mask[latent_slices(name, latent)] = False
        assert torch.equal(new[keep_mask], old[keep_mask]), name


def edited_latents(before: dict[str, torch.Tensor], trainer: Trainer) -> list[int]:
    W_dec = trainer.sae.W_dec.detach()
    return [j for j in range(D_SAE) if not torch.equal(W_dec[j], before["W_dec"][j])]


def test_anthropic_rewrites_two_of_three_dead(make_trainer: Callable[..., Trainer]) -> None:
    trainer = make_trainer(
        remedy="anthropic",
        resample_interval_steps=3,
        resample_max_latents=2,
        resample_sample_tokens=64,
    )
    remedy = trainer.remedies[0]
    before = run_to_event(trainer)
    metrics = remedy.after_step(trainer)
    after = snapshot(trainer)

    changed = edited_latents(before, trainer)
    assert len(changed) == 2
    assert set(changed) <= set(DEAD)
    assert metrics["dead/resampled"] == 2.0
    assert metrics["dead/detected"] == 3.0
    assert_only_latents_changed(before, after, changed)
    for latent in changed:
        for name in ("W_enc", "b_enc", "W_dec"):
            for key in MOMENTS:
                moment = after[f"{name}.{key}"][latent_slices(name, latent)]
                assert torch.count_nonzero(moment) == 0, (name, key, latent)


def alive_decoder_norm(before: dict[str, torch.Tensor], architecture: str) -> float:
    """Norm of rewritten decoder rows: 1 for TopK, the mean alive row norm for ReLU."""
    if architecture == "topk":
        return 1.0
    alive = [j for j in range(D_SAE) if j not in DEAD]
    return float(before["W_dec"][alive].norm(dim=1).mean())


@pytest.mark.parametrize("architecture", ["relu", "topk"])
def test_anthropic_rows_come_from_sample(
    architecture: str, make_trainer: Callable[..., Trainer]
) -> None:
    trainer = make_trainer(
        architecture,
        remedy="anthropic",
        resample_interval_steps=3,
        resample_max_latents=2,
        resample_sample_tokens=64,
    )
    remedy = trainer.remedies[0]
    before = run_to_event(trainer)
    remedy.after_step(trainer)
    sae = trainer.sae

    alive = [j for j in range(D_SAE) if j not in DEAD]
    encoder_norm = ENCODER_SCALE * before["W_enc"][:, alive].norm(dim=0).mean()
    centred = remedy.sample.sample().inputs - before["b_dec"]
    unit_inputs = centred / centred.norm(dim=-1, keepdim=True)
    decoder_norm = alive_decoder_norm(before, architecture)
    assert len(edited_latents(before, trainer)) == 2
    for latent in edited_latents(before, trainer):
        row = sae.W_dec.detach()[latent]
        assert_close(row.norm(), torch.tensor(decoder_norm))
        distances = (unit_inputs - row / decoder_norm).norm(dim=-1)
        assert distances.min() < 1e-6  # the row is one of the recent inputs, rescaled
        assert_close(sae.W_enc.detach()[:, latent], row / decoder_norm * encoder_norm)
        assert sae.b_enc[latent].item() == 0.0


def test_anthropic_draws_by_squared_loss(make_trainer: Callable[..., Trainer]) -> None:
    trainer = make_trainer(remedy="anthropic", resample_sample_tokens=2)
    remedy = trainer.remedies[0]
    sample = remedy.sample
    with torch.no_grad():
        sample.inputs[:2] = torch.eye(D_IN)[:2]
        sample.residuals[:2] = 0.0
        sample.residuals[0, 0] = 1.0  # loss 1, squared 1
        sample.residuals[1, 0] = 2.0  # loss 4, squared 16
    sample.filled = 2
    dead = torch.zeros(D_SAE, dtype=torch.bool)
    dead[1] = True

    draws = 2000
    second = 0
    for _ in range(draws):
        remedy.edit(trainer, torch.tensor([1]), dead)
        second += int(trainer.sae.W_dec[1].argmax().item() == 1)  # drew the input e1
    # probability 16 / 17 = 0.941 for the squared loss; proportional to the loss it would be 0.8
    assert second / draws == pytest.approx(16 / 17, abs=0.02)


def test_schedule_triggers_every_interval(make_trainer: Callable[..., Trainer]) -> None:
    trainer = make_trainer(
        remedy="anthropic",
        resample_interval_steps=3,
        resample_max_latents=2,
        resample_rewarm_steps=4,
        resample_sample_tokens=64,
    )
    metrics = [trainer.train_step(x) for x in batches(7)]
    resampled = [m["dead/resampled"] for m in metrics]
    assert resampled[2] == 2.0
    assert resampled[5] >= 1.0
    assert [resampled[i] for i in (0, 1, 3, 4, 6)] == [0.0] * 5
    assert metrics[-1]["dead/resample_events"] == 2.0
    # the event at step 3 re-warms steps 4-6 over 4 steps; the event at step 6 restarts it
    lrs = [m["optim/lr"] for m in metrics]
    assert lrs[:3] == pytest.approx([1e-3] * 3)
    assert lrs[3:] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 2.5e-4])


def test_recently_edited_latents_wait_a_window(make_trainer: Callable[..., Trainer]) -> None:
    trainer = make_trainer(remedy="reinit", resample_interval_steps=1, resample_sample_tokens=64)
    metrics = [trainer.train_step(x) for x in batches(4)]
    # the window fills at step 2, which edits all three dead latents; they wait 16 tokens
    assert [m["dead/resampled"] for m in metrics[:3]] == [0.0, 3.0, 0.0]


def test_reinit_writes_random_unit_directions(make_trainer: Callable[..., Trainer]) -> None:
    trainer = make_trainer(remedy="reinit", resample_interval_steps=3, resample_sample_tokens=64)
    remedy = trainer.remedies[0]
    before = run_to_event(trainer)
    metrics = remedy.after_step(trainer)
    after = snapshot(trainer)

    assert metrics["dead/resampled"] == 3.0
    assert_only_latents_changed(before, after, list(DEAD))
    alive = [j for j in range(D_SAE) if j not in DEAD]
    encoder_norm = ENCODER_SCALE * before["W_enc"][:, alive].norm(dim=0).mean()
    decoder_norm = alive_decoder_norm(before, "relu")
    rows = trainer.sae.W_dec.detach()[list(DEAD)] / decoder_norm
    assert_close(rows.norm(dim=-1), torch.ones(3))
    assert_close(trainer.sae.W_enc.detach()[:, list(DEAD)], rows.T * encoder_norm)
    assert (rows @ rows.T - torch.eye(3)).abs().max() > 1e-3  # three different directions


def test_residual_svd_takes_signed_top_directions(make_trainer: Callable[..., Trainer]) -> None:
    trainer = make_trainer(remedy="residual_svd", resample_interval_steps=3)
    remedy = trainer.remedies[0]
    before = run_to_event(trainer)
    sample = remedy.sample
    with torch.no_grad():
        sample.residuals.zero_()
        # squared singular values: 18 along e0, 2 along e1; nothing else
        sample.residuals[0, 0], sample.residuals[1, 0], sample.residuals[2, 1] = 3.0, -3.0, 1.4142
    sample.filled = 3
    metrics = remedy.after_step(trainer)
    after = snapshot(trainer)

    assert metrics["dead/resampled"] == 3.0
    assert_only_latents_changed(before, after, list(DEAD))
    rows = trainer.sae.W_dec.detach() / alive_decoder_norm(before, "relu")
    e0, e1 = torch.eye(D_IN)[0], torch.eye(D_IN)[1]
    assert_close(rows[1].abs(), e0)
    assert_close(rows[4], -rows[1])
    assert_close(rows[6].abs(), e1)


def test_residual_svd_revives_at_most_twice_the_rank(
    make_trainer: Callable[..., Trainer],
) -> None:
    trainer = make_trainer(remedy="residual_svd", resample_interval_steps=3)
    remedy = trainer.remedies[0]
    run_to_event(trainer)
    with torch.no_grad():
        remedy.sample.residuals.zero_()
        remedy.sample.residuals[0, 2] = 1.0  # rank 1: directions e2 and -e2 only
    remedy.sample.filled = 1
    assert remedy.after_step(trainer)["dead/resampled"] == 2.0


def test_bias_boost_hand_case(make_trainer: Callable[..., Trainer]) -> None:
    trainer = make_trainer(remedy="bias_boost", resample_interval_steps=3)
    remedy = trainer.remedies[0]
    before = run_to_event(trainer)
    sample = remedy.sample
    m = 10
    with torch.no_grad():
        sample.inputs[:m] = 0.0
        sample.inputs[:m, 0] = torch.arange(m, dtype=torch.float32)  # x_0 = 0, 1, ..., 9
        sample.thresholds[:m] = 2.0
        trainer.sae.W_enc[:, 4] = torch.eye(D_IN)[0]  # latent 4: pre = x_0 - 100
        trainer.sae.b_enc[4] = -100.0
        trainer.sae.b_dec.zero_()
    sample.filled = m
    trainer.l0.l0 = 1.6  # target share 1.6 / 8 = 0.2: latent 4 should fire on 2 of 10 tokens
    fill_moments(trainer)
    before = snapshot(trainer)
    metrics = remedy.after_step(trainer)
    after = snapshot(trainer)

    assert metrics["dead/resampled"] == 3.0
    # margins 2 - (x_0 - 100) = 102 - x_0; the 2nd smallest is 102 - 8 = 94
    assert trainer.sae.b_enc[4].item() == pytest.approx(-100.0 + 94.0 * (1 + 1e-4))
    pre_acts = sample.inputs[:m] @ trainer.sae.W_enc[:, 4] + trainer.sae.b_enc[4]
    assert int((pre_acts > 2.0).sum()) == 2
    for name in ("W_enc", "W_dec", "b_dec"):
        assert torch.equal(after[name], before[name])
    keep = torch.ones(D_SAE, dtype=torch.bool)
    keep[list(DEAD)] = False
    assert torch.equal(after["b_enc"][keep], before["b_enc"][keep])
    for key in MOMENTS:
        assert torch.count_nonzero(after[f"b_enc.{key}"][list(DEAD)]) == 0
        assert torch.equal(after[f"b_enc.{key}"][keep], before[f"b_enc.{key}"][keep])
        assert torch.equal(after[f"W_enc.{key}"], before[f"W_enc.{key}"])


def test_draw_proportional_skips_zero_weights() -> None:
    generator = torch.Generator().manual_seed(0)
    drawn = draw_proportional(torch.tensor([0.0, 5.0, 0.0, 1.0]), 2, generator)
    assert sorted(drawn.tolist()) == [1, 3]
    uniform = draw_proportional(torch.zeros(3), 3, generator)
    assert sorted(uniform.tolist()) == [0, 1, 2]


@pytest.mark.parametrize("remedy", ["anthropic", "ghost_grads", "bias_boost"])
def test_remedy_rejects_gated_sae(remedy: str, make_trainer: Callable[..., Trainer]) -> None:
    with pytest.raises(ValueError, match="needs a parameter b_enc"):
        make_trainer("gated", remedy=remedy)


def test_remedy_rejects_sae_without_b_enc() -> None:
    sae = SparseAutoencoder(SAEConfig(d_in=D_IN, d_sae=D_SAE, architecture="relu", k=None))
    del sae.b_enc
    with pytest.raises(ValueError, match="parameter b_enc of shape \\(8,\\)"):
        latent_parameters(sae, "anthropic")


@pytest.mark.parametrize(
    "remedy", ["anthropic", "ghost_grads", "auxk", "reinit", "residual_svd", "bias_boost"]
)
@pytest.mark.parametrize("architecture", ["relu", "topk", "batchtopk", "jumprelu"])
def test_every_remedy_trains_and_logs(
    remedy: str, architecture: str, make_trainer: Callable[..., Trainer]
) -> None:
    trainer = make_trainer(
        architecture, remedy=remedy, resample_interval_steps=3, resample_sample_tokens=32, k_aux=2
    )
    metrics = [trainer.train_step(x) for x in batches(6)]
    for step in metrics:
        finite = {
            key: math.isfinite(value) for key, value in step.items() if key != "optim/grad_norm"
        }
        assert all(finite.values()), step
        assert "dead/detected" in step
        assert "dead/revived" in step
    assert metrics[-1]["dead/detected"] <= 3.0
    assert trainer.tokens_seen == 6 * BATCH
