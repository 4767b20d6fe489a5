"""Train every single-dictionary architecture on one cached harvest, then evaluate each spliced.

    .venv/bin/python bench/architectures_cached.py --cache /tmp/acts.pt --out runs/arch-cached

This is ``saehooks train`` for several architectures with the harvest done once. The first
``--tokens`` training activations of the embedded defaults (SmolLM2-135M-Instruct,
``blocks.6.hook_resid_post``, wiki corpus, context 128, BOS left out) are harvested through the
pipeline's own functions and stored in float16 at ``--cache``, or read from there when the file
exists. Each architecture then trains with the CLI's defaults (d_sae 4608, batch 1,024, Adam lr
1e-3, geometric-median b_dec from the first 131,072 activations) on the same activations in one
shuffled order, is saved as ``saehooks train`` saves it, and is evaluated by ``evaluate_saved``
on ``--eval-tokens`` held-out tokens, as ``saehooks eval RUN --eval-tokens N`` does. Each run
folder gets ``sae/``, ``train_metrics.jsonl`` and ``metrics.json``; ``summary.json`` collects
the table.

It differs from ``saehooks train`` in the order of the activations (a permutation of the cached
harvest in place of the shuffling buffer) and in float16 storage of the cache.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from saehooks.data import activation_chunks
from saehooks.evaluation.saved_run import evaluate_saved
from saehooks.hosts import load_host
from saehooks.io import save_sae
from saehooks.sae import SAEConfig
from saehooks.training.config import DataConfig, TrainingConfig
from saehooks.training.pipeline import repeated_train_batches, token_stream
from saehooks.training.trainer import Trainer, new_sae

D_SAE, K = 4608, 32
# Architecture settings on top of the defaults, and TrainingConfig overrides.
RUNS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "topk": ({"architecture": "topk", "k": K}, {}),
    "batchtopk": ({"architecture": "batchtopk", "k": K}, {}),
    "matryoshka": (
        {"architecture": "matryoshka", "k": K, "matryoshka_widths": (288, 1152, D_SAE)},
        {},
    ),
    "jumprelu": (
        {"architecture": "jumprelu", "k": None, "jumprelu_threshold": 2.0},
        {"l0_coefficient": 4.0},
    ),
    "jumprelu-l0-1": (
        {"architecture": "jumprelu", "k": None, "jumprelu_threshold": 2.0},
        {"l0_coefficient": 1.0},
    ),
    "jumprelu-tanh": (
        {"architecture": "jumprelu", "k": None, "jumprelu_threshold": 2.0},
        {"l0_coefficient": 4.0, "l0_penalty": "tanh"},
    ),
    "gated": ({"architecture": "gated", "k": None}, {"l1_coefficient": 5.0}),
    "relu": ({"architecture": "relu", "k": None}, {"l1_coefficient": 5.0}),
}


def cached_activations(path: Path, data_cfg: DataConfig, tokens: int) -> torch.Tensor:
    """Load the first ``tokens`` training activations ``[tokens, d_in]``, or harvest them."""
    if path.exists():
        return torch.load(path, weights_only=True)
    host = load_host(data_cfg.model)
    hook = host.resolve_hook(data_cfg.hook_name)
    chunks = activation_chunks(
        repeated_train_batches(token_stream(data_cfg, host), data_cfg.harvest_batch_size),
        lambda batch: host.harvest(batch, [hook]),
        hook,
        drop_bos=data_cfg.drop_bos,
    )
    collected, count = [], 0
    for chunk in chunks:
        collected.append(chunk.to(torch.float16))
        count += chunk.shape[0]
        if count >= tokens:
            break
    acts = torch.cat(collected)[:tokens]
    torch.save(acts, path)
    return acts


def train_one(
    name: str, acts: torch.Tensor, out: Path, data_cfg: DataConfig, hook_name: str
) -> dict[str, float]:
    """Train, save and return the training time and last metrics of one architecture."""
    sae_settings, training_settings = RUNS[name]
    sae_cfg = SAEConfig(
        d_in=acts.shape[1],
        d_sae=D_SAE,
        hook_name=hook_name,
        model_name="SmolLM2-135M-Instruct",
        **sae_settings,
    )
    train_cfg = TrainingConfig(total_tokens=acts.shape[0], **training_settings)
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
    return {"train_seconds": seconds, "train_tokens_per_s": result.tokens / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("runs/arch-cached"))
    parser.add_argument("--tokens", type=int, default=300_000)
    parser.add_argument("--eval-tokens", type=int, default=8192)
    parser.add_argument("--only", nargs="*", default=list(RUNS), choices=list(RUNS))
    args = parser.parse_args()

    data_cfg = DataConfig()
    acts = cached_activations(args.cache, data_cfg, args.tokens)
    host = load_host(data_cfg.model)
    hook_name = host.resolve_hook(data_cfg.hook_name)
    summary_path = args.out / "summary.json"
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
