"""Cost of ``run_evaluation`` against three plain forward passes on the same tokens.

    nice -n 10 .venv/bin/python bench/bench_splice_overhead.py [--contexts 4] [--repeats 3]

For each backend, on SmolLM2-135M-Instruct and the TopK SAE in ``pretrained/`` (float32) at
``blocks.6.hook_resid_post``, one batch of wiki contexts of 128 tokens:

- plain: three forward passes with bare hooks on the same library, one clean, one with the SAE's
  reconstruction after BOS and one with zeros after BOS, logits only. On TransformerLens the hooks
  go through ``bridge.run_with_hooks``, on nnsight through torch forward hooks on the HF model
  that nnsight wraps.
- evaluation: ``run_evaluation`` on that batch, which adds the splice context managers, the SAE
  encode for FVU and L0, and the per-token CE and KL metrics.
- metrics: the CE (three times) and KL computations alone, on logits computed beforehand.

Each is timed ``--repeats`` times, interleaved, in wall-clock seconds and in CPU seconds of this
process; the medians go to ``--out`` and stdout as JSON. On a machine shared with other jobs, the
CPU-time overhead is the steadier figure. The overhead
is evaluation / plain - 1, and the splice machinery's share of it is that minus metrics / plain.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from saehooks import pretrained
from saehooks.evaluation import next_token_cross_entropy, next_token_kl_divergence, run_evaluation
from saehooks.hosts import NNsightHost, TransformerLensHost, load_host
from saehooks.training.config import DataConfig
from saehooks.training.pipeline import token_stream

HOOK = "blocks.6.hook_resid_post"


def after_bos(function):
    def replace(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x[:, :1], function(x)[:, 1:]], dim=1)  # [B, T, d]

    return replace


def plain_passes(host, sae, tokens: torch.Tensor) -> list[torch.Tensor]:
    """Clean, SAE-spliced and zero-ablated logits through the library's bare hook mechanism."""
    replacements = [None, after_bos(sae), after_bos(torch.zeros_like)]
    outputs = []
    with torch.no_grad():
        for replacement in replacements:
            if isinstance(host, TransformerLensHost):
                hooks = [] if replacement is None else [(HOOK, lambda x, hook, r=replacement: r(x))]
                outputs.append(host.bridge.run_with_hooks(tokens, fwd_hooks=hooks))
            else:
                outputs.append(hf_pass(host.model, tokens, replacement))
    return outputs


def hf_pass(model, tokens: torch.Tensor, replacement) -> torch.Tensor:
    if replacement is None:
        return model(tokens).logits
    handle = model.model.layers[6].register_forward_hook(lambda m, i, o: replacement(o))
    try:
        return model(tokens).logits
    finally:
        handle.remove()


def metrics_only(logits: list[torch.Tensor], tokens: torch.Tensor) -> None:
    clean, spliced, zero = logits
    for output in logits:
        next_token_cross_entropy(output, tokens)
    next_token_kl_divergence(clean, spliced)
    del zero


def timed(function) -> tuple[float, float]:
    """Run ``function`` once; return its wall-clock seconds and this process's CPU seconds."""
    start, start_cpu = time.perf_counter(), time.process_time()
    function()
    return time.perf_counter() - start, time.process_time() - start_cpu


def overheads(times: dict[str, list[float]]) -> dict[str, float]:
    """Median seconds of each measurement, and the evaluation's overhead over the plain passes."""
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {
        "overhead": round(medians["evaluation"] / medians["plain"] - 1, 4),
        "overhead_without_metrics": round(
            (medians["evaluation"] - medians["metrics"]) / medians["plain"] - 1, 4
        ),
        **{f"median_{name}": round(value, 3) for name, value in medians.items()},
    }


def bench_backend(backend: str, sae, tokens: torch.Tensor, repeats: int) -> dict:
    host = load_host("smollm2", backend=backend)
    assert isinstance(host, TransformerLensHost | NNsightHost)
    logits = plain_passes(host, sae, tokens)  # warm-up, and the logits for metrics_only
    run_evaluation(host, sae, [tokens], HOOK)
    runs = {
        "plain": lambda: plain_passes(host, sae, tokens),
        "evaluation": lambda: run_evaluation(host, sae, [tokens], HOOK),
        "metrics": lambda: metrics_only(logits, tokens),
    }
    wall: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, function in runs.items():
            wall_seconds, cpu_seconds = timed(function)
            wall[name].append(wall_seconds)
            cpu[name].append(cpu_seconds)
    return {
        "backend": backend,
        "wall_clock": overheads(wall),
        "cpu_time": overheads(cpu),
        "all_wall_seconds": {name: [round(v, 3) for v in values] for name, values in wall.items()},
        "all_cpu_seconds": {name: [round(v, 3) for v in values] for name, values in cpu.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contexts", type=int, default=4, help="contexts of 128 tokens")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/splice_overhead.json"))
    args = parser.parse_args()
    torch.manual_seed(0)

    sae = pretrained.load("smollm2-l6-topk32", dtype="float32").requires_grad_(False)
    tokens = None
    results = []
    for backend in ("transformer_lens", "nnsight"):
        if tokens is None:
            host = load_host("smollm2")
            stream = token_stream(DataConfig(hook_name=HOOK, context_size=128), host)
            tokens = next(iter(stream.batches("eval", args.contexts)))  # [B, 128]
            del host
        results.append(bench_backend(backend, sae, tokens, args.repeats))
    report = {
        "tokens": list(tokens.shape),
        "threads": torch.get_num_threads(),
        "load_average_at_end": os.getloadavg(),
        "results": results,
    }
    text = json.dumps(report, indent=2) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.out.with_name(args.out.name + ".tmp")
    temporary.write_text(text)
    temporary.replace(args.out)
    print(text, end="")


if __name__ == "__main__":
    main()
