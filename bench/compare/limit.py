"""The fp32 pipeline limit: the end-to-end speed if harvest and training did nothing else.

Harvest and training run one after the other on the same cores, so a token costs the time to
harvest it plus its share of one training step. The limit is the inverse of that sum:
``1 / (1 / harvest_tokens_per_s + 1 / step_tokens_per_s)``.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

import torch
from workload import HOOK_NAME, Workload

from saehooks.hosts import Host
from saehooks.sae import SAEConfig
from saehooks.training.config import DataConfig, TrainingConfig
from saehooks.training.pipeline import token_stream
from saehooks.training.trainer import Trainer, new_sae

HARVEST_BATCH_CONTEXTS = DataConfig.harvest_batch_size
WARMUP_STEPS = 2


@dataclass(frozen=True)
class PipelineLimit:
    """The speeds of the two parts and the limit they set, all in tokens per second."""

    harvest_tokens_per_s: float
    """Host forward passes through the hooked layer only, BOS positions included."""
    step_tokens_per_s: float
    """TopK training steps on real activations, batch tokens divided by the step time."""

    @property
    def limit_tokens_per_s(self) -> float:
        return pipeline_limit(self.harvest_tokens_per_s, self.step_tokens_per_s)


def pipeline_limit(harvest_tokens_per_s: float, step_tokens_per_s: float) -> float:
    """Return the tokens/s of harvest and training run in turn: the inverse of the summed costs.

    Raises:
        ValueError: a speed is not positive.
    """
    for name, value in (("harvest", harvest_tokens_per_s), ("step", step_tokens_per_s)):
        if not value > 0:
            raise ValueError(f"{name} speed {value} tokens/s must be positive")
    return 1.0 / (1.0 / harvest_tokens_per_s + 1.0 / step_tokens_per_s)


def measure_limit(
    host: Host,
    workload: Workload,
    harvest_batches: int,
    steps: int,
    hook_name: str = HOOK_NAME,
    corpus: str = "wiki",
) -> PipelineLimit:
    """Time ``harvest_batches`` host passes and ``steps`` training steps of the workload's SAE.

    One harvest pass and ``WARMUP_STEPS`` steps run first and are not timed. The steps train on
    the harvested activations, cycling through them when there are fewer than the steps need.
    ``corpus`` is a ``saehooks train --corpus`` spec.

    Raises:
        ValueError: ``harvest_batches`` or ``steps`` is not positive, or the corpus contains fewer
            than ``harvest_batches + 1`` batches.
    """
    if harvest_batches < 1 or steps < 1:
        raise ValueError(f"harvest_batches={harvest_batches} and steps={steps} must be positive")
    data_cfg = DataConfig(hook_name=hook_name, corpus=corpus, context_size=workload.context_size)
    stream = token_stream(data_cfg, host).batches("train", HARVEST_BATCH_CONTEXTS, drop_last=True)
    batches = list(itertools.islice(stream, harvest_batches + 1))
    if len(batches) <= harvest_batches:
        raise ValueError(
            f"corpus {corpus!r} contains {len(batches)} batches of {HARVEST_BATCH_CONTEXTS} "
            f"contexts, fewer than the {harvest_batches + 1} the measurement needs"
        )
    hook = host.resolve_hook(hook_name)

    host.harvest(batches[0], [hook])
    start = time.perf_counter()
    harvested = [host.harvest(tokens, [hook])[hook] for tokens in batches[1:]]
    harvest_seconds = time.perf_counter() - start
    harvest_tokens = sum(tokens.numel() for tokens in batches[1:])

    acts = torch.cat([a[:, 1:].reshape(-1, a.shape[-1]) for a in harvested])  # [n, d_in]
    step_seconds = _time_steps(acts.float(), workload, steps)
    return PipelineLimit(
        harvest_tokens_per_s=harvest_tokens / harvest_seconds,
        step_tokens_per_s=steps * workload.batch_tokens / step_seconds,
    )


def _time_steps(acts: torch.Tensor, workload: Workload, steps: int) -> float:
    """Return the seconds ``steps`` timed training steps take after the warm-up steps."""
    sae_cfg = SAEConfig(d_in=acts.shape[1], d_sae=workload.d_sae, architecture="topk", k=workload.k)
    train_cfg = TrainingConfig(batch_size=workload.batch_tokens, total_tokens=workload.train_tokens)
    trainer = Trainer(new_sae(sae_cfg, seed=0), train_cfg, progress=False)
    trainer.initialize(acts[: workload.batch_tokens])

    size = workload.batch_tokens
    indices = torch.arange(size)
    batches = [acts[(indices + i * size) % len(acts)] for i in range(WARMUP_STEPS + steps)]
    for x in batches[:WARMUP_STEPS]:
        trainer.train_step(x)
    start = time.perf_counter()
    for x in batches[WARMUP_STEPS:]:
        trainer.train_step(x)
    return time.perf_counter() - start
