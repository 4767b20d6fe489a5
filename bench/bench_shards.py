"""Training throughput from activation shards against a live host, and of one pass for two SAEs.

    .venv/bin/python bench/bench_shards.py [--tokens 1000000] [--out bench/results/shards.json]

Workload: SmolLM2 ``blocks.6.hook_resid_post``, TopK k=32, d_sae=4608, batches of 4,096, the
wiki corpus, the default data settings. Each figure is training tokens per second of wall time
of the whole call: token stream, buffer fills, initialisation, training and saving. The host
model is loaded once beforehand and not counted.

- live: ``train_sae`` harvesting from the host while it trains;
- harvest: ``harvest_shards`` writing the same tokens to float32 shards (a one-time cost);
- shards: ``train_sae`` reading those shards through memory maps;
- live_two_saes: ``train_saes`` training k=32 and k=64 on one live pass, counting the tokens of
  both SAEs.
"""

from __future__ import annotations

import argparse
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
from saehooks.training.harvest import harvest_shards
from saehooks.training.multi import SAEJob, train_saes
from saehooks.training.pipeline import train_sae, write_json

HOOK = "blocks.6.hook_resid_post"


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=1_000_000, help="training tokens per run")
    parser.add_argument("--batch-size", type=int, default=4096, help="activations per step")
    parser.add_argument("--out", type=Path, default=Path("bench/results/shards.json"))
    args = parser.parse_args()

    host = load_host("smollm2")
    data_cfg = DataConfig(hook_name=HOOK)
    train_cfg = TrainingConfig(total_tokens=args.tokens, batch_size=args.batch_size)
    sae_cfg = SAEConfig(d_in=host.d_model, d_sae=4608, architecture="topk", k=32, hook_name=HOOK)
    results: dict[str, object] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads",
        "tokens": args.tokens,
        "batch_size": args.batch_size,
        "load_average_start": load_average(),
    }
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        start = time.perf_counter()
        live = train_sae(sae_cfg, data_cfg, train_cfg, folder / "live", host=host, progress=False)
        results["live_tokens_per_s"] = live.result.tokens / (time.perf_counter() - start)

        start = time.perf_counter()
        harvest_shards(data_cfg, [HOOK], folder / "shards", args.tokens, host=host, progress=False)
        results["harvest_tokens_per_s"] = args.tokens / (time.perf_counter() - start)

        start = time.perf_counter()
        stored = train_sae(
            sae_cfg,
            data_cfg,
            train_cfg,
            folder / "from-shards",
            progress=False,
            activations=folder / "shards",
        )
        results["shards_tokens_per_s"] = stored.result.tokens / (time.perf_counter() - start)

        wider = SAEConfig(d_in=host.d_model, d_sae=4608, architecture="topk", k=64, hook_name=HOOK)
        jobs = [
            SAEJob(sae_cfg, train_cfg, folder / "k32"),
            SAEJob(wider, train_cfg, folder / "k64"),
        ]
        start = time.perf_counter()
        outcomes = train_saes(jobs, data_cfg, host=host, progress=False)
        both_tokens = sum(outcome.result.tokens for outcome in outcomes)
        results["live_two_saes_tokens_per_s"] = both_tokens / (time.perf_counter() - start)

    results["shards_over_live"] = results["shards_tokens_per_s"] / results["live_tokens_per_s"]
    results["load_average_end"] = load_average()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
