"""Train one SAE per dead-latent remedy on the same activations, evaluate each, and tabulate.

    nice -n 10 .venv/bin/python bench/dead_latents.py [--out runs/dead] [--remedies none auxk]

The run is set up to kill latents: a ReLU SAE (4,608 latents) on SmolLM2's
blocks.6.hook_resid_post with a high L1 coefficient (20) and b_dec starting at zero, so that the
encoder sees the uncentred input. The 300k training activations are harvested once, through the
same token stream, host harvest and shuffling buffer as ``saehooks train``, and kept in memory:
every remedy (and the run without one) trains on the same batches in the same order. Each run
folder then holds what ``saehooks train`` writes (``sae/``, ``train_metrics.jsonl``,
``run.json``) and the ``metrics.json`` of ``evaluate_saved`` on 8,192 held-out tokens. The table
goes to stdout and its rows to ``bench/results/dead_latents.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from dead_latents_table import collect, markdown, write_rows  # noqa: E402  # needs sys.path

from saehooks.data import ActivationBuffer, activation_chunks  # noqa: E402
from saehooks.evaluation.saved_run import evaluate_saved  # noqa: E402
from saehooks.hosts import Host, load_host  # noqa: E402
from saehooks.io import save_sae  # noqa: E402
from saehooks.resampling import REMEDY_NAMES, RemedyConfig, build_remedies  # noqa: E402
from saehooks.sae import SAEConfig  # noqa: E402
from saehooks.training.config import DataConfig, TrainingConfig  # noqa: E402
from saehooks.training.pipeline import (  # noqa: E402
    activation_width,
    repeated_train_batches,
    token_stream,
    write_json,
)
from saehooks.training.trainer import Trainer, new_sae  # noqa: E402

EVAL_TOKENS = 8192
D_SAE = 4608
TRAIN_CFG = TrainingConfig(
    total_tokens=300_000, l1_coefficient=20.0, b_dec_init="zeros", dead_window_tokens=50_000
)


def remedy_config(name: str) -> RemedyConfig:
    """The remedy settings of every run: events every 50 steps, 10 steps of re-warm-up."""
    return RemedyConfig(remedy=name, resample_interval_steps=50, resample_rewarm_steps=10)


def harvest(
    host: Host, data_cfg: DataConfig, train_cfg: TrainingConfig, hook_name: str
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Harvest the buffer's first fill (for initialisation) and every training batch, as copies."""
    chunks = activation_chunks(
        repeated_train_batches(token_stream(data_cfg, host), data_cfg.harvest_batch_size),
        lambda tokens: host.harvest(tokens, [hook_name]),
        hook_name,
        drop_bos=data_cfg.drop_bos,
    )
    buffer = ActivationBuffer(
        chunks,
        capacity=max(data_cfg.buffer_tokens, train_cfg.batch_size),
        batch_size=train_cfg.batch_size,
        d=activation_width(host, hook_name),
        seed=train_cfg.seed,
    )
    first_fill = buffer.unserved()
    n_batches = math.ceil(train_cfg.total_tokens / train_cfg.batch_size)
    return first_fill, [batch.clone() for batch in itertools.islice(buffer, n_batches)]


def train_one(
    name: str,
    sae_cfg: SAEConfig,
    data_cfg: DataConfig,
    train_cfg: TrainingConfig,
    first_fill: torch.Tensor,
    batches: list[torch.Tensor],
    run_dir: Path,
) -> None:
    """Train, save and describe one run the way ``train_sae`` does, from cached batches."""
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = run_dir / "train_metrics.jsonl"
    metrics_path.unlink(missing_ok=True)
    remedy_cfg = remedy_config(name)
    trainer = Trainer(
        new_sae(sae_cfg, train_cfg.seed),
        train_cfg,
        metrics_path,
        progress=False,
        remedies=build_remedies(remedy_cfg),
    )
    trainer.initialize(first_fill)
    result = trainer.fit(iter(batches))
    extra = {
        "training_tokens": result.tokens,
        "context_size": data_cfg.context_size,
        "corpus": data_cfg.corpus,
        "eval_fraction": data_cfg.eval_fraction,
        "shuffle_seed": data_cfg.shuffle_seed,
        "prepend_bos": True,
        "input_scale_folded": trainer.scale,
    }
    save_sae(trainer.export(), run_dir / "sae", extra=extra)
    write_json(
        run_dir / "run.json",
        {
            "sae": sae_cfg.to_dict(),
            "data": dataclasses.asdict(data_cfg),
            "training": train_cfg.to_dict(),
            "remedy": remedy_cfg.to_dict(),
            "result": dataclasses.asdict(result),
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/dead"))
    parser.add_argument("--remedies", nargs="+", default=list(REMEDY_NAMES))
    parser.add_argument("--results", type=Path, default=Path("bench/results/dead_latents.json"))
    parser.add_argument(
        "--tokens",
        type=int,
        default=TRAIN_CFG.total_tokens,
        help="training tokens per run; below the default buffer size it also sets the buffer "
        "size, for a quick trial (default: 300000)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    train_cfg = dataclasses.replace(TRAIN_CFG, total_tokens=args.tokens)
    data_cfg = DataConfig(buffer_tokens=min(DataConfig().buffer_tokens, args.tokens))
    host = load_host(data_cfg.model)
    hook_name = host.resolve_hook(data_cfg.hook_name)
    sae_cfg = SAEConfig(
        d_in=activation_width(host, hook_name),
        d_sae=D_SAE,
        architecture="relu",
        k=None,
        hook_name=hook_name,
        model_name=host.model_name,
    )
    first_fill, batches = harvest(host, data_cfg, train_cfg, hook_name)
    logging.info("harvested %d batches of %d", len(batches), train_cfg.batch_size)

    for name in args.remedies:
        logging.info("training with remedy %s", name)
        train_one(name, sae_cfg, data_cfg, train_cfg, first_fill, batches, args.out / name)
        result, _ = evaluate_saved(
            args.out / name, EVAL_TOKENS, host=host, progress=False, report=False
        )
        logging.info("%s: %s", name, json.dumps(dataclasses.asdict(result)))

    rows = collect(args.out)
    write_rows(rows, args.results)
    print(markdown(rows))


if __name__ == "__main__":
    main()
