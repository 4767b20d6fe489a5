"""Throughput of the training pipeline's parts and of the whole, on SmolLM2 and the wiki corpus.

    .venv/bin/python bench/bench_pipeline.py [--tokens 200000] [--out bench/results/pipeline.json]

Measures (all tokens/s, fp32, the machine's default thread count):
- harvest: host forward through the hooked layer only, batches of 16 contexts x 128 tokens;
- sae_step: one TopK (k=32, d_sae=4608) training step on real activations, per batch size;
- end_to_end: ``train_sae`` from text to saved SAE, harvest and training interleaved.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from saehooks.hosts import load_host
from saehooks.sae import SAEConfig
from saehooks.training.config import DataConfig, TrainingConfig
from saehooks.training.pipeline import token_stream, train_sae
from saehooks.training.trainer import Trainer, new_sae

HOOK = "blocks.6.hook_resid_post"


def bench_harvest(host, data_cfg: DataConfig, n_batches: int) -> tuple[float, torch.Tensor]:
    batches = list(itertools.islice(token_stream(data_cfg, host).batches("train", 16), n_batches))
    host.harvest(batches[0], [HOOK])  # warm-up
    start = time.perf_counter()
    acts = [
        host.harvest(tokens, [HOOK])[HOOK][:, 1:].reshape(-1, host.d_model) for tokens in batches
    ]
    seconds = time.perf_counter() - start
    return sum(tokens.numel() for tokens in batches) / seconds, torch.cat(acts)


def bench_sae_step(acts: torch.Tensor, batch_size: int, n_steps: int) -> float:
    sae_cfg = SAEConfig(d_in=acts.shape[1], d_sae=4608, architecture="topk", k=32)
    trainer = Trainer(
        new_sae(sae_cfg, seed=0), TrainingConfig(batch_size=batch_size), progress=False
    )
    trainer.initialize(acts[:8192])
    batches = [
        acts[i * batch_size % (len(acts) - batch_size) :][:batch_size] for i in range(n_steps + 2)
    ]
    for x in batches[:2]:
        trainer.train_step(x)
    start = time.perf_counter()
    for x in batches[2:]:
        trainer.train_step(x)
    return n_steps * batch_size / (time.perf_counter() - start)


def bench_end_to_end(host, tokens: int) -> float:
    data_cfg = DataConfig(hook_name=HOOK)
    sae_cfg = SAEConfig(d_in=host.d_model, d_sae=4608, architecture="topk", k=32)
    with tempfile.TemporaryDirectory() as folder:
        outcome = train_sae(
            sae_cfg,
            data_cfg,
            TrainingConfig(total_tokens=tokens),
            folder,
            host=host,
            progress=False,
        )
    return outcome.result.tokens / outcome.result.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=200_000, help="end-to-end training tokens")
    parser.add_argument("--out", type=Path, default=Path("bench/results/pipeline.json"))
    args = parser.parse_args()

    host = load_host("smollm2")
    harvest_rate, acts = bench_harvest(host, DataConfig(hook_name=HOOK), n_batches=20)
    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads",
        "harvest_tokens_per_s": harvest_rate,
        "sae_step_tokens_per_s": {
            str(batch_size): bench_sae_step(acts, batch_size, n_steps=max(4, 16384 // batch_size))
            for batch_size in (1024, 4096)
        },
        "end_to_end_tokens_per_s": bench_end_to_end(host, args.tokens),
        "end_to_end_tokens": args.tokens,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.out.with_suffix(".tmp")
    temporary.write_text(json.dumps(results, indent=2) + "\n")
    temporary.replace(args.out)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
