"""Quality and speed of training an SAE on a bfloat16 host against a float32 host, same tokens.

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_bf16_host.py [--tokens 1000000]
        [--eval-tokens 24576] [--out bench/results/bf16_host.json]

Trains two TopK SAEs (k=32, d_sae=4608 by default) at ``--hook`` on SmolLM2 and the wiki corpus,
with identical settings and seeds, so both see the same tokens in the same order: one on
activations of the float32 host, one on activations of the host run in bfloat16 (cast to float32
as they leave it, ``DataConfig.host_dtype='bfloat16'``). Both are then evaluated by saehooks'
evaluator on the same held-out tokens, spliced into the float32 host, so the comparison
shows what the bfloat16 activations cost the SAE, not what bfloat16 costs the model.

It also times the host harvest alone on ``--harvest-batches`` batches of 16 contexts for each
dtype, and reports the relative error ‖a_bf16 − a_fp32‖ / ‖a_fp32‖ of those activations.

Results go to ``--out`` as JSON and to stdout; the run folders go under ``--runs``.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import platform
import time
from pathlib import Path

import torch

from saehooks.evaluation.saved_run import evaluate_saved
from saehooks.hosts import Host, load_host
from saehooks.sae import SAEConfig
from saehooks.training.config import DataConfig, TrainingConfig
from saehooks.training.pipeline import load_training_host, token_stream, train_sae


def bench_harvest(hosts: dict[str, Host], data_cfg: DataConfig, n_batches: int) -> dict[str, float]:
    """Time each host's harvest on the same token batches; return tokens/s and the bf16 error."""
    reference = hosts["float32"]
    batches = list(
        itertools.islice(
            token_stream(data_cfg, reference).batches("train", data_cfg.harvest_batch_size),
            n_batches,
        )
    )
    hook = data_cfg.hook_name
    results: dict[str, float] = {}
    acts: dict[str, list[torch.Tensor]] = {}
    for dtype, host in hosts.items():
        host.harvest(batches[0], [hook])  # warm-up
        start = time.perf_counter()
        acts[dtype] = [host.harvest(tokens, [hook])[hook][:, 1:] for tokens in batches]
        seconds = time.perf_counter() - start
        results[f"harvest_tokens_per_s_{dtype}"] = sum(t[:, 1:].numel() for t in batches) / seconds
    reference_acts = torch.cat([a.reshape(-1, a.shape[-1]) for a in acts["float32"]])
    bf16_acts = torch.cat([a.reshape(-1, a.shape[-1]) for a in acts["bfloat16"]])
    error = (bf16_acts - reference_acts).norm() / reference_acts.norm()
    results["activation_relative_error"] = error.item()
    return results


def train_and_evaluate(
    name: str,
    host: Host,
    eval_host: Host,
    sae_cfg: SAEConfig,
    data_cfg: DataConfig,
    train_cfg: TrainingConfig,
    runs: Path,
    eval_tokens: int,
) -> dict[str, float]:
    start = time.perf_counter()
    outcome = train_sae(
        sae_cfg, data_cfg, train_cfg, runs / name, host=host, progress=False, overwrite=True
    )
    seconds = time.perf_counter() - start
    result, _ = evaluate_saved(
        outcome.run_dir, eval_tokens=eval_tokens, host=eval_host, progress=False, report=False
    )
    return {
        "train_seconds": seconds,
        "tokens_per_s": outcome.result.tokens / seconds,
        "fvu": result.fvu,
        "l0": result.l0,
        "ce_loss_recovered": result.ce_loss_recovered,
        "kl_div": result.kl_div,
        "dead_fraction": result.dead_fraction,
        "eval_tokens": result.n_tokens,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--hook", default="blocks.6.hook_resid_post")
    parser.add_argument("--tokens", type=int, default=1_000_000, help="training tokens per SAE")
    parser.add_argument("--eval-tokens", type=int, default=24_576)
    parser.add_argument("--d-sae", type=int, default=4608)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--harvest-batches", type=int, default=8)
    parser.add_argument("--runs", type=Path, default=Path("runs/bench-bf16-host"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/bf16_host.json"))
    args = parser.parse_args()

    data_cfg = DataConfig(model=args.model, hook_name=args.hook)
    train_cfg = TrainingConfig(total_tokens=args.tokens, batch_size=args.batch_size)
    hosts = {
        "float32": load_training_host(data_cfg),
        "bfloat16": load_training_host(dataclasses.replace(data_cfg, host_dtype="bfloat16")),
    }
    eval_host = load_host(args.model)  # float32, as the evaluation measures against it
    sae_cfg = SAEConfig(d_in=hosts["float32"].d_model, d_sae=args.d_sae, k=args.k)

    results: dict[str, object] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_average_before": os.getloadavg(),
        "settings": {
            "model": args.model,
            "hook": args.hook,
            "tokens": args.tokens,
            "eval_tokens": args.eval_tokens,
            "d_sae": args.d_sae,
            "k": args.k,
            "batch_size": args.batch_size,
        },
        "harvest": bench_harvest(hosts, data_cfg, args.harvest_batches),
    }
    for dtype, host in hosts.items():
        run_cfg = dataclasses.replace(data_cfg, host_dtype=dtype)
        results[f"host_{dtype}"] = train_and_evaluate(
            dtype, host, eval_host, sae_cfg, run_cfg, train_cfg, args.runs, args.eval_tokens
        )
    results["load_average_after"] = os.getloadavg()

    args.out.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.out.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(results, indent=2) + "\n")
    temporary.replace(args.out)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
