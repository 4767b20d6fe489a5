"""Train several SAEs on one stream of activations: one live host pass, or one shard folder.

Each SAE keeps its own trainer, optimiser, metrics file and run folder. SAEs at the same hook
that would fill identical buffers (same seed, batch size and buffer capacity) share one
``ActivationBuffer``, so a sweep over k or d_sae gathers each batch once. Every SAE receives exactly
the batches that ``train_sae`` would give it when trained alone on the same activations.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO

import torch
from tqdm.auto import tqdm

from saehooks.data import ActivationBuffer, ActivationShards
from saehooks.hosts import Host
from saehooks.resampling import RemedyConfig, build_remedies
from saehooks.sae import CompositeConfig, SAEConfig
from saehooks.training.config import DataConfig, TrainingConfig, config_from_dict
from saehooks.training.pipeline import (
    TRAIN_METRICS_FILENAME,
    TrainOutcome,
    activation_width,
    load_training_host,
    repeated_train_batches,
    rows_to_train,
    run_folders,
    save_run,
    token_stream,
)
from saehooks.training.trainer import Trainer, TrainResult, _signals_deferred, new_sae

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SAEJob:
    """One SAE of a shared pass: what to build, how to train it, and where to save it."""

    sae_cfg: SAEConfig | CompositeConfig
    """The SAE; ``hook_name`` names the hook it trains on."""
    train_cfg: TrainingConfig
    """Its own token budget, batch size, optimiser settings and seed."""
    out_dir: str | Path
    """Its run folder; every job needs a different one."""
    remedy_cfg: RemedyConfig = dataclasses.field(default_factory=RemedyConfig)
    """Its dead-latent remedy."""


GroupKey = tuple[str, int, int, int, int]
"""Hook name, seed, batch size, capacity and rows read: the settings that fix a buffer's batches."""


@dataclasses.dataclass
class BufferGroup:
    """The jobs whose trainers read the same batches from one buffer."""

    buffer: ActivationBuffer
    jobs: list[SAEJob]
    trainers: list[Trainer]


def train_saes(
    jobs: Sequence[SAEJob],
    data_cfg: DataConfig | None = None,
    host: Host | None = None,
    activations: str | Path | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> list[TrainOutcome]:
    """Train every job's SAE on one pass over the activations and save each in its run folder.

    Without ``activations``, one live host pass over ``data_cfg``'s training split harvests all
    the jobs' hooks at once (``host``, or the host that ``data_cfg.model`` names, loaded in
    ``data_cfg.host_dtype``). With ``activations``, a shard folder from ``harvest_shards``, the
    SAEs read the stored activations instead and ``data_cfg`` only sets ``buffer_tokens``,
    because the other data settings come from the shard manifest. Ctrl-C stops all SAEs cleanly
    and saves what they learned. A folder that already contains a run is replaced only with
    ``overwrite``, and the old run is kept until the new SAE is saved: an error or Ctrl-C before
    that restores it.

    Returns:
        One outcome per job, in the order of ``jobs``.

    Raises:
        ValueError: no jobs, two jobs share a run folder, a job names no hook, or a job's hook,
            ``d_in``, model or token budget does not fit the host or the shards.
        FileExistsError: a run folder contains a run and ``overwrite`` is False.
    """
    if not jobs:
        raise ValueError("train_saes needs at least one SAEJob")
    folders = [Path(job.out_dir).resolve() for job in jobs]
    if len(set(folders)) != len(folders):
        raise ValueError(f"every job needs its own out_dir; got {[str(f) for f in folders]}")
    data_cfg = data_cfg if data_cfg is not None else DataConfig()

    shards = ActivationShards(activations) if activations is not None else None
    if shards is not None:
        data_cfg = shard_data_config(shards, data_cfg.buffer_tokens)
        jobs = [checked_against_shards(job, shards) for job in jobs]
        for job in jobs:
            warn_short_read_ahead(job, shards)
    else:
        host = host if host is not None else load_training_host(data_cfg)
        jobs = [checked_against_host(job, host) for job in jobs]
    run_dirs = [Path(job.out_dir) for job in jobs]
    with run_folders(run_dirs, overwrite) as opened:
        run_folder_of = {id(job): folder for job, folder in zip(jobs, opened, strict=True)}
        members = group_jobs(jobs, data_cfg.buffer_tokens)
        hooks = [key[0] for key in members]
        if shards is not None:
            sources: list[Iterable[torch.Tensor]] = [shards.chunks(hook) for hook in hooks]
        else:
            assert host is not None  # loaded above
            sources = live_sources(host, data_cfg, hooks)
        groups = [
            build_group(key, group_members, source)
            for (key, group_members), source in zip(members.items(), sources, strict=True)
        ]

        results = run_groups(groups, progress)
        outcomes = {}
        for group in groups:
            for job, trainer in zip(group.jobs, group.trainers, strict=True):
                outcomes[id(job)] = save_run(
                    Path(job.out_dir),
                    trainer,
                    data_cfg,
                    job.remedy_cfg,
                    results[id(trainer)],
                    activations=shards.folder if shards is not None else None,
                )
                run_folder_of[id(job)].commit()
    return [outcomes[id(job)] for job in jobs]


def shard_data_config(shards: ActivationShards, buffer_tokens: int) -> DataConfig:
    """Return the data settings of the shards' harvest, with ``buffer_tokens`` replaced."""
    settings = {**shards.data_settings, "buffer_tokens": buffer_tokens}
    return config_from_dict(DataConfig, settings)


def job_hook(job: SAEJob) -> str:
    hook = job.sae_cfg.hook_name
    if not hook:
        raise ValueError(
            f"the SAE config of the job for {job.out_dir} has no hook_name; set the hook it "
            "trains on, for example hook_name='blocks.6.hook_resid_post'"
        )
    return hook


def checked_against_shards(job: SAEJob, shards: ActivationShards) -> SAEJob:
    """Return ``job`` with the shards' model name, after checking its hook, d_in and budget."""
    hook = job_hook(job)
    source = f"the activations at {hook!r} in {shards.folder}"
    check_d_in(job, shards.width(hook), source)
    recorded = (shards.model_name, shards.data_settings.get("model"))
    if job.sae_cfg.model_name and job.sae_cfg.model_name not in recorded:
        raise ValueError(
            f"the SAE config names model_name={job.sae_cfg.model_name!r}, but the shards in "
            f"{shards.folder} were harvested from {shards.model_name!r}; train on shards of "
            f"that model, or set model_name={shards.model_name!r}"
        )
    budget = job.train_cfg.total_tokens
    if budget > shards.num_tokens:
        raise ValueError(
            f"total_tokens={budget} exceeds the {shards.num_tokens} activations per hook in "
            f"{shards.folder}; lower the token budget to at most {shards.num_tokens}, or harvest "
            f"at least {budget} tokens (saehooks harvest --tokens {budget})"
        )
    sae_cfg = dataclasses.replace(job.sae_cfg, model_name=shards.model_name)
    return dataclasses.replace(job, sae_cfg=sae_cfg)


def warn_short_read_ahead(job: SAEJob, shards: ActivationShards) -> None:
    """Warn when the shards cover ``job``'s budget but not the whole batches training reads.

    Training consumes whole batches until the budget is reached, so with fewer stored
    activations its last batch is smaller than in live training on the same data.
    """
    needed = rows_to_train(job.train_cfg)
    if shards.num_tokens < needed:
        logger.warning(
            "the %d activations per hook in %s cover total_tokens=%d but not the whole last "
            "batch of %d, so the last step differs from live training; harvest at least %d "
            "tokens to match it",
            shards.num_tokens,
            shards.folder,
            job.train_cfg.total_tokens,
            job.train_cfg.batch_size,
            needed,
        )


def checked_against_host(job: SAEJob, host: Host) -> SAEJob:
    """Return ``job`` with the host's spelling of its hook and the host's model name."""
    hook = host.resolve_hook(job_hook(job))
    check_d_in(job, activation_width(host, hook), f"the activations at {hook!r}")
    sae_cfg = dataclasses.replace(job.sae_cfg, hook_name=hook, model_name=host.model_name)
    return dataclasses.replace(job, sae_cfg=sae_cfg)


def check_d_in(job: SAEJob, width: int, source: str) -> None:
    if job.sae_cfg.d_in != width:
        raise ValueError(
            f"sae d_in={job.sae_cfg.d_in} does not match the width {width} of {source}; "
            f"set d_in={width}"
        )


def group_jobs(jobs: Sequence[SAEJob], buffer_tokens: int) -> dict[GroupKey, list[SAEJob]]:
    """Group the jobs that would fill identical buffers, in order of first appearance.

    The capacity rule is ``train_sae``'s: the buffer never contains more than the token budget.
    It reads only the activations its trainers consume, so jobs with different budgets get
    buffers of their own, fed by the same harvest.
    """
    groups: dict[GroupKey, list[SAEJob]] = {}
    for job in jobs:
        cfg = job.train_cfg
        capacity = max(min(buffer_tokens, cfg.total_tokens), cfg.batch_size)
        key = (job.sae_cfg.hook_name, cfg.seed, cfg.batch_size, capacity, rows_to_train(cfg))
        groups.setdefault(key, []).append(job)
    return groups


def live_sources(
    host: Host, data_cfg: DataConfig, hooks: Sequence[str]
) -> list[Iterator[torch.Tensor]]:
    """Return one activation chunk stream ``[n, d]`` per entry of ``hooks``, all from one pass.

    Each token batch is harvested once at every hook. ``itertools.tee`` keeps a harvested batch
    until the slowest stream has read it.
    """
    # NOTE: memory grows with how far the streams drift apart, which is at most about the
    # largest buffer capacity, since the loop in run_groups always advances the buffer that
    # has served the fewest activations. A buffer drops its stream once it has read its
    # budget, so a group that finishes early does not keep later harvests alive.
    unique_hooks = list(dict.fromkeys(hooks))
    batches = repeated_train_batches(token_stream(data_cfg, host), data_cfg.harvest_batch_size)
    harvests = (host.harvest(tokens, unique_hooks) for tokens in batches)  # hook -> [B, T, d]
    copies = itertools.tee(harvests, len(hooks))
    return [
        hook_chunks(copy, hook, data_cfg.drop_bos) for copy, hook in zip(copies, hooks, strict=True)
    ]


def hook_chunks(
    harvests: Iterable[dict[str, torch.Tensor]], hook: str, drop_bos: bool
) -> Iterator[torch.Tensor]:
    """Yield the activations at ``hook`` of each harvest as ``[n, d]``, as ``activation_chunks``."""
    for harvested in harvests:
        acts = harvested[hook]  # [B, T, d]
        if drop_bos:
            acts = acts[:, 1:]  # [B, T - 1, d]
        yield acts.reshape(-1, acts.shape[-1])  # [n, d]


def build_group(key: GroupKey, jobs: list[SAEJob], source: Iterable[torch.Tensor]) -> BufferGroup:
    """Build the shared buffer and one trainer per job, initialised from the first fill."""
    _, seed, batch_size, capacity, max_rows = key
    buffer = ActivationBuffer(
        source,
        capacity=capacity,
        batch_size=batch_size,
        d=jobs[0].sae_cfg.d_in,
        seed=seed,
        max_rows=max_rows,
    )
    trainers = [
        Trainer(
            new_sae(job.sae_cfg, job.train_cfg.seed),
            job.train_cfg,
            Path(job.out_dir) / TRAIN_METRICS_FILENAME,
            progress=False,
            remedies=build_remedies(job.remedy_cfg),
        )
        for job in jobs
    ]
    first_fill = buffer.unserved()
    for trainer in trainers:
        trainer.initialize(first_fill)
    return BufferGroup(buffer=buffer, jobs=jobs, trainers=trainers)


def run_groups(groups: list[BufferGroup], progress: bool) -> dict[int, TrainResult]:
    """Train until every trainer has its token budget, the sources run dry, or Ctrl-C.

    Each round advances the buffer that has served the fewest activations by one batch, and
    every unfinished trainer of its group takes one step on that batch. Ctrl-C or SIGTERM takes
    effect between rounds. Returns the result of each trainer, keyed by ``id(trainer)``.
    """
    trainers = [trainer for group in groups for trainer in group.trainers]
    logs = {id(trainer): open_metrics_log(trainer) for trainer in trainers}
    last_metrics: dict[int, dict[str, float]] = {}
    total = sum(trainer.cfg.total_tokens for trainer in trainers)
    bar = tqdm(total=total, unit="tok", unit_scale=True, disable=not progress)
    active = list(groups)
    interrupted = False
    start = time.perf_counter()
    try:
        while active:
            group = min(active, key=lambda candidate: candidate.buffer.num_served)
            running = [t for t in group.trainers if t.tokens_seen < t.cfg.total_tokens]
            x = next(group.buffer, None) if running else None
            if x is None:
                active.remove(group)
                continue
            # Every trainer of the group steps on the batch before a signal takes effect, so
            # their step counts and metrics files agree with the saved SAEs.
            with _signals_deferred():
                for trainer in running:
                    metrics = trainer.train_step(x)
                    elapsed = time.perf_counter() - start
                    metrics["speed/tokens_per_s"] = trainer.tokens_seen / elapsed
                    logs[id(trainer)].write(json.dumps(metrics) + "\n")
                    last_metrics[id(trainer)] = metrics
            bar.update(x.shape[0] * len(running))
    except KeyboardInterrupt:
        interrupted = True
        logger.warning("interrupted; keeping what each SAE has trained")
    finally:
        bar.close()
        for log in logs.values():
            log.close()
    seconds = time.perf_counter() - start
    return {
        id(trainer): TrainResult(
            steps=trainer.step_count,
            tokens=trainer.tokens_seen,
            interrupted=interrupted and trainer.tokens_seen < trainer.cfg.total_tokens,
            seconds=seconds,
            last_metrics=last_metrics.get(id(trainer), {}),
        )
        for trainer in trainers
    }


def open_metrics_log(trainer: Trainer) -> IO[str]:
    """Open the trainer's metrics file for appending, one flushed line per step."""
    assert trainer.metrics_path is not None  # build_group always sets it
    trainer.metrics_path.parent.mkdir(parents=True, exist_ok=True)
    return trainer.metrics_path.open("a", encoding="utf-8", buffering=1)
