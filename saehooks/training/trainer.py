"""The training loop: one SAE, batches of activations in, metrics out."""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch
from tqdm.auto import tqdm

from saehooks.resampling import Remedy
from saehooks.sae import CompositeSAE, SAEConfig, SparseAutoencoder, build_sae
from saehooks.trackers import FireCounter, L0Tracker, PenaltyTracker
from saehooks.training.config import TrainingConfig
from saehooks.training.initialization import geometric_median, normalization_scale
from saehooks.training.objectives import (
    default_estimators,
    default_penalties,
    uses_unit_norm_decoder,
)
from saehooks.training.schedules import lr_multiplier

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a finished (or interrupted) training run did."""

    steps: int
    """Optimiser steps taken."""
    tokens: int
    """Activations consumed."""
    interrupted: bool
    """True when Ctrl-C stopped the run before its token budget."""
    seconds: float
    """Wall-clock time of the loop."""
    last_metrics: dict[str, float]
    """Metrics of the final step."""


class Trainer:
    """Train one SAE with Adam on batches of activations ``[batch, d_in]``.

    The trainer attaches its trackers to the SAE (``l0``, ``fires``, the architecture's penalty
    trackers, such as ``l1`` for ReLU SAEs, and its estimators, such as BatchTopK's
    ``threshold``; see ``saehooks.training.objectives``), builds the loss from the MSE plus the
    weighted term of every attached ``PenaltyTracker``, and writes one JSON line of metrics per
    step to ``metrics_path`` when given. Call ``initialize`` with a sample of activations before
    ``fit``; ``export`` returns the trained SAE with the input scale folded into its weights.

    Besides ``SparseAutoencoder``, any module works that has the same contract: a ``cfg`` with
    ``d_in``, ``d_sae`` and ``architecture``; a ``b_dec`` parameter ``[d_in]`` subtracted from the
    input; the hook point ``hook_acts`` that sees ``[n_tokens, d_sae]``; ``trackers``;
    ``fold_input_scale(scale)``; and a constructor ``cls(cfg, device=...)``.
    """

    def __init__(
        self,
        sae: SparseAutoencoder,
        cfg: TrainingConfig,
        metrics_path: Path | None = None,
        progress: bool = True,
        remedies: Sequence[Remedy] = (),
    ) -> None:
        self.sae = sae
        self.cfg = cfg
        self.metrics_path = metrics_path
        self.progress = progress
        self.scale = 1.0
        self.step_count = 0
        self.tokens_seen = 0
        self.rewarm_start_step = 0
        self.rewarm_steps = 0

        if isinstance(sae, SparseAutoencoder | CompositeSAE):
            sae.decode_mode = cfg.decode_mode
        self.l0 = L0Tracker()
        self.l0.attach(sae, "l0")
        self.device = next(sae.parameters()).device
        self.fires = FireCounter(sae.cfg.d_sae).to(self.device)
        self.fires.attach(sae, "fires")
        for name, penalty in default_penalties(sae, cfg).items():
            penalty.attach(sae, name)
        for name, estimator in default_estimators(sae).items():
            estimator.attach(sae, name)

        self.optimizer = torch.optim.Adam(sae.parameters(), lr=cfg.lr, betas=cfg.adam_betas)
        if cfg.lr_warmup_steps >= cfg.total_steps // 2:
            logger.warning(
                "lr_warmup_steps=%d covers half or more of the %d steps; the learning rate barely "
                "reaches its peak. Lower lr_warmup_steps or raise total_tokens",
                cfg.lr_warmup_steps,
                cfg.total_steps,
            )
        if cfg.dead_window_tokens > cfg.total_tokens:
            logger.warning(
                "dead_window_tokens=%d exceeds total_tokens=%d, so no latent will count as dead",
                cfg.dead_window_tokens,
                cfg.total_tokens,
            )
        self.remedies = list(remedies)
        for remedy in self.remedies:
            remedy.attach(self)

    @torch.no_grad()
    def initialize(self, sample: torch.Tensor) -> None:
        """Set the input scale and b_dec from a sample of raw activations ``[n, d_in]``."""
        sample = sample.to(self.device, torch.float32)
        self.scale = normalization_scale(sample) if self.cfg.normalize_activations else 1.0
        scaled = sample * self.scale
        if self.cfg.b_dec_init == "geometric_median":
            self.sae.b_dec.copy_(geometric_median(scaled))
        elif self.cfg.b_dec_init == "mean":
            self.sae.b_dec.copy_(scaled.mean(dim=0))
        logger.info("input scale %.4g, b_dec initialised by %s", self.scale, self.cfg.b_dec_init)

    def train_step(self, x: torch.Tensor) -> dict[str, float]:
        """One optimiser step on raw activations ``x`` ``[batch, d_in]``; return its metrics."""
        cfg = self.cfg
        lr = cfg.lr * lr_multiplier(
            self.step_count, cfg.total_steps, cfg.lr_warmup_steps, cfg.lr_decay_fraction
        )
        if self.step_count - self.rewarm_start_step < self.rewarm_steps:
            lr *= (self.step_count - self.rewarm_start_step + 1) / self.rewarm_steps
        for group in self.optimizer.param_groups:
            group["lr"] = lr

        x = x.to(self.device, self.sae.b_dec.dtype) * self.scale
        penalties = self._penalties()
        for penalty in penalties.values():
            penalty.loss = None
        x_hat = self.sae(x)  # [batch, d_in]; the trackers saw this pass
        mse = (x_hat - x).pow(2).sum(dim=-1).mean()
        loss = mse
        penalty_metrics: dict[str, float] = {}
        for name, penalty in penalties.items():
            if penalty.loss is None:
                continue
            coefficient = penalty.coefficient_at(self.step_count)
            loss = loss + coefficient * penalty.loss
            penalty_metrics[f"loss/{name}"] = penalty.loss.item()
            penalty_metrics[f"coefficient/{name}"] = coefficient

        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        unit_norm_decoder = uses_unit_norm_decoder(self.sae)
        if unit_norm_decoder:
            self.sae.remove_parallel_decoder_grad()
        grad_norm = float("nan")
        if cfg.grad_clip_norm is not None:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.sae.parameters(), cfg.grad_clip_norm)
            grad_norm = grad_norm.item()
        self.optimizer.step()
        if unit_norm_decoder:
            self.sae.normalize_decoder()

        self.step_count += 1
        self.tokens_seen += x.shape[0]
        with torch.no_grad():
            variance = (x - x.mean(dim=0)).pow(2).sum(dim=-1).mean()
            fvu = (mse / variance).item()
        metrics = {
            "step": self.step_count,
            "tokens": self.tokens_seen,
            "loss/total": loss.item(),
            "loss/mse": mse.item(),
            "loss/fvu": fvu,
            "sparsity/l0": self.l0.l0,
            "dead/fraction": self.fires.dead_fraction(cfg.dead_window_tokens),
            "optim/lr": lr,
            "optim/grad_norm": grad_norm,
            **penalty_metrics,
        }
        for remedy in self.remedies:
            metrics.update(remedy.after_step(self))
        return metrics

    def rewarm_lr(self, steps: int) -> None:
        """Scale the learning rate by a linear ramp from 1/steps to 1 over the next ``steps`` steps.

        Remedies call this after rewriting latents whose Adam moments they reset.
        """
        self.rewarm_start_step = self.step_count
        self.rewarm_steps = steps

    def _penalties(self) -> dict[str, PenaltyTracker]:
        return {
            name: tracker
            for name, tracker in self.sae.trackers.items()
            if isinstance(tracker, PenaltyTracker)
        }

    def fit(self, batches: Iterable[torch.Tensor]) -> TrainResult:
        """Train until the token budget is consumed, the batches run out, or Ctrl-C is pressed.

        Ctrl-C (or SIGTERM) finishes cleanly: a signal that arrives during a step takes effect
        after the step's optimizer update and its metrics line, so the SAE, the step count and
        the metrics file agree. A signal while the next batch is being harvested stops at once.
        """
        cfg = self.cfg
        start = time.perf_counter()
        metrics: dict[str, float] = {}
        interrupted = False
        bar = tqdm(total=cfg.total_tokens, unit="tok", unit_scale=True, disable=not self.progress)
        log_file = self._open_metrics_log()
        try:
            for x in batches:
                if self.tokens_seen >= cfg.total_tokens:
                    break
                with _signals_deferred():
                    metrics = self.train_step(x)
                    metrics["speed/tokens_per_s"] = self.tokens_seen / (time.perf_counter() - start)
                    if log_file is not None:
                        log_file.write(json.dumps(metrics) + "\n")
                bar.update(x.shape[0])
                if self.step_count % cfg.log_every == 0:
                    bar.set_postfix(_progress_fields(metrics), refresh=False)
        except KeyboardInterrupt:
            interrupted = True
            logger.warning("interrupted at step %d; keeping what was trained", self.step_count)
        finally:
            bar.close()
            if log_file is not None:
                log_file.close()
        return TrainResult(
            steps=self.step_count,
            tokens=self.tokens_seen,
            interrupted=interrupted,
            seconds=time.perf_counter() - start,
            last_metrics=metrics,
        )

    def export(self) -> SparseAutoencoder:
        """A copy of the SAE without trackers, its input scale folded into the weights."""
        trained = type(self.sae)(self.sae.cfg, device=self.device)
        state = {
            name: value.detach()
            for name, value in self.sae.state_dict().items()
            if not name.startswith("trackers.")
        }
        trained.load_state_dict(state)
        trained.fold_input_scale(self.scale)
        return trained

    def _open_metrics_log(self) -> IO[str] | None:
        if self.metrics_path is None:
            return None
        self.metrics_path.parent.mkdir(parents=True, exist_ok=True)
        # Line buffering puts every step's metrics on disk as soon as the step ends.
        return self.metrics_path.open("a", encoding="utf-8", buffering=1)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, then deliver them to their old handlers.

    A step interrupted between parameter updates, or between the update and its metrics line,
    would leave Adam's state half written or the metrics file one line short of the step count.
    Outside the main thread Python cannot install handlers, so there the block runs unprotected.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {
        number: signal.signal(number, lambda signum, frame: received.append(signum))
        for number in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for number, handler in previous.items():
            # None marks a handler installed outside Python; the default is the closest match.
            signal.signal(number, signal.SIG_DFL if handler is None else handler)
    for number in received[:1]:
        signal.raise_signal(number)


def _progress_fields(metrics: dict[str, Any]) -> dict[str, str]:
    return {
        "tok/s": f"{metrics['speed/tokens_per_s']:.0f}",
        "loss": f"{metrics['loss/total']:.4g}",
        "fvu": f"{metrics['loss/fvu']:.3f}",
        "L0": f"{metrics['sparsity/l0']:.1f}",
        "dead": f"{metrics['dead/fraction']:.3f}",
    }


def new_sae(cfg: SAEConfig, seed: int, device: torch.device | str = "cpu") -> SparseAutoencoder:
    """An SAE of the class ``cfg.architecture`` names, initialised from a fixed seed."""
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        return build_sae(cfg, device=device)
    finally:
        torch.random.set_rng_state(generator_state)
