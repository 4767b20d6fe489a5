"""Time of a TopK SAE training step with the dense and the sparse decoder, and where they cross.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_sparse_decode.py [--repeats 3] [--compile]

Parts, all float32 on random Gaussian inputs (TopK's cost does not depend on the data):

- step: ``Trainer.train_step`` of a TopK SAE with d_in=576, d_sae=4608, k=32 (the default
  SmolLM2 run), with its default trackers, at batches of 1024 and 4096 tokens, in three
  variants: ``decode_mode='dense'``; ``'sparse'``, where the encoder's gradients and the
  trackers also read only the selected latents; and ``sparse_decoder_only``, the sparse decoder
  with a dense encoder backward and dense trackers, which no-op hooks on ``hook_pre_acts`` and
  ``hook_acts`` force (the sparse path before the encoder and trackers learnt to skip them).
- crossover: the decoder alone, forward and backward (gradients for the selected values, W_dec and
  b_dec), at d_sae=4608 and d_in=576, for k from 32 to 1152 and batches from 64 to 4096 tokens.
  ``prefers_sparse_decode`` encodes where the sparse decoder stops winning.
- composites: forward, MSE and backward of a deep-encoder SAE (k=32) and a mixture of 8
  experts (2 per token, k=16 each) with d_sae=4608, at 1024 tokens, in both decode modes.
- compile (with ``--compile``): the training step's SAE forward and loss under ``torch.compile``,
  against the same step uncompiled, at 4096 tokens.

Each timing is the median of ``--repeats`` runs after one warm-up, with the variants interleaved.
Results go to ``--out`` as JSON and to stdout. The thread count is torch's (set
OMP_NUM_THREADS to fix it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

from saehooks.sae import DeepConfig, MixtureConfig, SAEConfig, build_sae
from saehooks.sae.sparse_decode import sparse_decode
from saehooks.training.config import TrainingConfig
from saehooks.training.trainer import Trainer, new_sae

D_IN, D_SAE, K = 576, 4608, 32


def median_seconds(functions: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Time each function ``repeats`` times after one warm-up, interleaved; return medians."""
    for function in functions.values():
        function()
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def new_trainer(batch_size: int, decode_mode: str, dense_hooks: bool = False) -> Trainer:
    sae = new_sae(SAEConfig(d_in=D_IN, d_sae=D_SAE, architecture="topk", k=K), seed=0)
    if dense_hooks:
        # A hook that is not a selection-reading tracker receives the dense tensors.
        for hook_point in (sae.hook_pre_acts, sae.hook_acts):
            hook_point.register_forward_hook(lambda module, inputs, output: None)
    cfg = TrainingConfig(
        total_tokens=100 * batch_size,
        batch_size=batch_size,
        lr_warmup_steps=0,
        decode_mode=decode_mode,
    )
    return Trainer(sae, cfg, progress=False)


def bench_step(batch_sizes: list[int], repeats: int) -> dict[str, dict[str, float]]:
    results = {}
    for batch_size in batch_sizes:
        x = torch.randn(batch_size, D_IN)
        trainers = {mode: new_trainer(batch_size, mode) for mode in ("dense", "sparse")}
        trainers["sparse_decoder_only"] = new_trainer(batch_size, "sparse", dense_hooks=True)
        functions = {mode: partial(trainer.train_step, x) for mode, trainer in trainers.items()}
        results[str(batch_size)] = median_seconds(functions, repeats)
    return results


def decode_pass(values: torch.Tensor, indices: torch.Tensor, W_dec, b_dec, sparse: bool) -> None:
    """Run one decoder forward and backward, as in training."""
    if sparse:
        x_hat = sparse_decode(values, indices, W_dec, b_dec)  # [n, d_in]
    else:
        acts = torch.zeros(values.shape[0], D_SAE).scatter(-1, indices, values)  # [n, d_sae]
        x_hat = acts @ W_dec + b_dec  # [n, d_in]
    x_hat.pow(2).sum().backward()


def bench_crossover(
    batch_sizes: list[int], ks: list[int], repeats: int
) -> dict[str, dict[str, dict[str, float]]]:
    W_dec = torch.randn(D_SAE, D_IN, requires_grad=True)
    b_dec = torch.zeros(D_IN, requires_grad=True)
    results: dict[str, dict[str, dict[str, float]]] = {}
    for batch_size in batch_sizes:
        results[str(batch_size)] = {}
        pre_acts = torch.randn(batch_size, D_SAE)
        for k in ks:
            top = pre_acts.topk(k, dim=-1, sorted=False)
            values = top.values.relu().requires_grad_(True)  # [n, k]
            functions = {
                mode: partial(decode_pass, values, top.indices, W_dec, b_dec, mode == "sparse")
                for mode in ("dense", "sparse")
            }
            results[str(batch_size)][str(k)] = median_seconds(functions, repeats)
    return results


def bench_composites(batch_size: int, repeats: int) -> dict[str, dict[str, float]]:
    """Time forward, MSE and backward of two composite SAEs in both decode modes."""
    x = torch.randn(batch_size, D_IN)
    configs = {
        "deep": DeepConfig(d_in=D_IN, d_sae=D_SAE, k=K),
        "moe": MixtureConfig(d_in=D_IN, d_sae=D_SAE, n_experts=8, experts_per_token=2, k=16),
    }
    results = {}
    for name, cfg in configs.items():
        saes = {}
        for mode in ("dense", "sparse"):
            torch.manual_seed(0)
            saes[mode] = build_sae(cfg)
            saes[mode].decode_mode = mode
        functions = {mode: partial(loss_backward, sae, x) for mode, sae in saes.items()}
        results[name] = median_seconds(functions, repeats)
    return results


def loss_backward(sae: torch.nn.Module, x: torch.Tensor) -> None:
    (sae(x) - x).pow(2).sum(dim=-1).mean().backward()


def bench_compile(batch_size: int, repeats: int) -> dict[str, float]:
    """Time the SAE forward, MSE and backward, eager against ``torch.compile``."""
    x = torch.randn(batch_size, D_IN)
    timings = {}
    for mode in ("dense", "sparse"):
        sae = new_sae(SAEConfig(d_in=D_IN, d_sae=D_SAE, architecture="topk", k=K), seed=0)
        sae.decode_mode = mode

        def loss_of(inputs: torch.Tensor, model=sae) -> torch.Tensor:
            return (model(inputs) - inputs).pow(2).sum(dim=-1).mean()

        compiled = torch.compile(loss_of)
        start = time.perf_counter()
        compiled(x).backward()
        timings[f"{mode}_compile_seconds"] = time.perf_counter() - start
        functions = {
            f"{mode}_eager": lambda f=loss_of: f(x).backward(),
            f"{mode}_compiled": lambda f=compiled: f(x).backward(),
        }
        timings.update(median_seconds(functions, repeats))
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--parts",
        default="step,crossover,composites",
        help="comma-separated parts to run, from step, crossover and composites",
    )
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--out", type=Path, default=Path("bench/results/sparse_decode.json"))
    args = parser.parse_args()
    parts = set(args.parts.split(","))

    results: dict[str, object] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_average_before": os.getloadavg(),
    }
    if "step" in parts:
        results["step_seconds"] = bench_step([1024, 4096], args.repeats)
    if "crossover" in parts:
        results["decode_seconds"] = bench_crossover(
            [64, 1024, 4096], [32, 128, 288, 576, 1152], args.repeats
        )
    if "composites" in parts:
        results["composite_seconds"] = bench_composites(1024, args.repeats)
    if args.compile:
        results["compile_seconds"] = bench_compile(4096, args.repeats)
    results["load_average_after"] = os.getloadavg()

    args.out.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.out.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(results, indent=2) + "\n")
    temporary.replace(args.out)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
