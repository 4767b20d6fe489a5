"""Train the composite SAEs on one cached harvest, then evaluate each spliced into the host.

    .venv/bin/python bench/composites_cached.py --cache /tmp/acts.pt --out runs/arch-cached

This follows ``bench/architectures_cached.py`` step for step, so that the composites' rows in
``docs/architectures.md`` compare with the single-dictionary architectures' rows. The first
``--tokens`` training activations of the embedded defaults (SmolLM2-135M-Instruct,
``blocks.6.hook_resid_post``, wiki corpus, context 128, BOS left out) are read from ``--cache``
(float16 ``[tokens, d_in]``) or, when the file does not exist, harvested and stored there. Each
composite trains with its own defaults and the CLI's (4,608 latents in all, batch 1,024, Adam lr
1e-3, geometric-median b_dec from the first 131,072 activations) on the same activations in one
seeded shuffled order, is saved as ``saehooks train`` saves it (with ``run.json``, so that
``bench/composite_usage.py`` can read the run), and is evaluated by ``evaluate_saved`` on
``--eval-tokens`` held-out tokens. ``summary_composites.json`` in ``--out`` collects the rows,
and for the hierarchical SAE the children that fired during training and moved from their
initialisation.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))

from architectures_cached import cached_activations  # noqa: E402  # needs sys.path

from saehooks.evaluation.saved_run import evaluate_saved
from saehooks.hosts import load_host
from saehooks.io import save_sae
from saehooks.sae import (
    CompositeConfig,
    DeepConfig,
    HierarchicalConfig,
    HierarchicalSAE,
    MixtureConfig,
    child_usage,
)
from saehooks.training.config import DataConfig, TrainingConfig
from saehooks.training.trainer import Trainer, new_sae

D_SAE = 4608
MODEL_NAME = "SmolLM2-135M-Instruct"
CONFIGS: dict[str, type[CompositeConfig]] = {
    "moe": MixtureConfig,
    "hierarchical": HierarchicalConfig,
    "deep": DeepConfig,
}


def train_one(
    name: str, acts: torch.Tensor, out: Path, data_cfg: DataConfig, hook_name: str
) -> dict[str, Any]:
    """Train and save one composite; return its training speed and, if any, its child usage."""
    sae_cfg = CONFIGS[name](
        d_in=acts.shape[1], d_sae=D_SAE, hook_name=hook_name, model_name=MODEL_NAME
    )
    train_cfg = TrainingConfig(total_tokens=acts.shape[0])
    run_dir = out / name
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = run_dir / "train_metrics.jsonl"
    metrics_path.unlink(missing_ok=True)

    trainer = Trainer(new_sae(sae_cfg, train_cfg.seed), train_cfg, metrics_path, progress=False)
    trainer.initialize(acts[: data_cfg.buffer_tokens].float())
    order = torch.randperm(acts.shape[0], generator=torch.Generator().manual_seed(train_cfg.seed))
    batches = (
        acts[order[start : start + train_cfg.batch_size]].float()
        for start in range(0, acts.shape[0] - train_cfg.batch_size + 1, train_cfg.batch_size)
    )
    start = time.perf_counter()
    result = trainer.fit(batches)
    seconds = time.perf_counter() - start

    row: dict[str, Any] = {"train_seconds": seconds, "train_tokens_per_s": result.tokens / seconds}
    if isinstance(trainer.sae, HierarchicalSAE):
        initial = new_sae(sae_cfg, train_cfg.seed)
        usage = child_usage(trainer.sae, initial, trainer.fires.ever_fired)
        row["children_during_training"] = usage._asdict()
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
    run = {
        "sae": sae_cfg.to_dict(),
        "data": dataclasses.asdict(data_cfg),
        "training": train_cfg.to_dict(),
        "result": dataclasses.asdict(result),
    }
    (run_dir / "run.json").write_text(json.dumps(run, indent=2) + "\n")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("runs/arch-cached"))
    parser.add_argument("--tokens", type=int, default=300_000)
    parser.add_argument("--eval-tokens", type=int, default=8192)
    parser.add_argument("--only", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    args = parser.parse_args()

    data_cfg = DataConfig()
    acts = cached_activations(args.cache, data_cfg, args.tokens)
    host = load_host(data_cfg.model)
    hook_name = host.resolve_hook(data_cfg.hook_name)
    summary_path = args.out / "summary_composites.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    for name in args.only:
        row = train_one(name, acts, args.out, data_cfg, hook_name)
        result, _ = evaluate_saved(args.out / name, args.eval_tokens, host=host, progress=False)
        summary[name] = {**row, **result.to_dict()}
        summary_path.parent.mkdir(parents=True, exist_ok=True)
        summary_path.write_text(json.dumps(summary, indent=2) + "\n")
        print(name, json.dumps(summary[name]), flush=True)


if __name__ == "__main__":
    main()
