"""Train one SAE workload with SAELens, sparsify and saehooks, then score all with saehooks.

    .venv/bin/python bench/compare [--short] [--benchmarks BENCHMARKS.md]

The workload: SmolLM2-135M-Instruct, ``blocks.6.hook_resid_post``, TopK k=32, d_sae=4608,
batches of 4,096 activations, the embedded wiki corpus, fp32. Each library trains in a child
process (SAELens and sparsify in their own venvs under ``<saehooks cache>/bench-venvs``, built
on first use), one after the other. Then this process measures the fp32 pipeline limit and
evaluates every SAE on the same held-out tokens. The full mode (1M training tokens each) writes
``bench/results/compare.json`` and the table in BENCHMARKS.md. ``--short`` (32,768 tokens each)
writes ``bench/results/compare-short.json`` and touches BENCHMARKS.md only when
``--benchmarks`` names it.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import logging
import os
import platform
import sys
from pathlib import Path
from typing import Any

import torch
from inputs import write_training_text
from library_runs import TrainedRun, train_saehooks, train_saelens, train_sparsify
from limit import PipelineLimit, measure_limit
from report import (
    comparison,
    markdown_table,
    replace_section,
    section_text,
    write_json,
    write_text_atomically,
)
from scoring import held_out_batches, score
from venvs import LIBRARY_PINS, TORCH_PIN
from workload import FULL, SHORT, Workload

from saehooks.evaluation.evaluate import EvalResult
from saehooks.hosts import load_host
from saehooks.hosts.smollm2 import cache_dir

logger = logging.getLogger("bench.compare")

REPOSITORY = Path(__file__).resolve().parents[2]
# Timed parts of the limit measurement: (harvest batches of 16 contexts, training steps).
LIMIT_SAMPLES = {"full": (32, 8), "short": (8, 4)}


def cpu_model() -> str:
    """Return the CPU's model name from /proc/cpuinfo, or 'CPU model unknown' elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "CPU model unknown"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/compare", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--short", action="store_true", help="quick check: 32,768 training tokens per library"
    )
    parser.add_argument("--tokens", type=int, help="training tokens per library (overrides)")
    parser.add_argument("--eval-tokens", type=int, help="held-out tokens to score (overrides)")
    parser.add_argument(
        "--work-dir",
        type=Path,
        help="folder for the SAEs and logs (default: <saehooks cache>/bench-compare/<mode>)",
    )
    parser.add_argument(
        "--json", type=Path, help="output JSON (default: bench/results/compare[-short].json)"
    )
    parser.add_argument(
        "--benchmarks",
        type=Path,
        help="Markdown file whose comparison section gets the table (default: BENCHMARKS.md "
        "in full mode, none with --short)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    mode = "short" if args.short else "full"
    workload = SHORT if args.short else FULL
    workload = dataclasses.replace(
        workload,
        train_tokens=args.tokens or workload.train_tokens,
        eval_tokens=args.eval_tokens or workload.eval_tokens,
    )
    work_dir = args.work_dir or cache_dir() / "bench-compare" / mode
    json_path = (
        args.json or REPOSITORY / "bench" / "results" / f"compare{'-short' * args.short}.json"
    )
    benchmarks = args.benchmarks if args.benchmarks or args.short else REPOSITORY / "BENCHMARKS.md"
    started = datetime.datetime.now(datetime.timezone.utc)

    dataset = work_dir / "train.jsonl"
    documents = write_training_text(dataset, workload.context_size, workload.eval_fraction)
    logger.info("wrote %d training documents to %s", documents, dataset)
    trained = [
        train_saelens(workload, dataset, work_dir),
        train_sparsify(workload, dataset, work_dir),
        train_saehooks("saehooks_fp32", workload, work_dir),
        train_saehooks("saehooks_default", workload, work_dir),
    ]
    for run in trained:
        logger.info(
            "%s: %.0f tokens/s, peak RSS %.2f GB", run.name, run.tokens_per_s, run.peak_rss_gb
        )

    # The limit is the fp32 one, and the evaluator scores every SAE on the same fp32 host.
    host = load_host("smollm2", dtype=torch.float32)
    limit = measure_limit(host, workload, *LIMIT_SAMPLES[mode])
    batches = held_out_batches(host, workload)
    scores = {run.name: score(host, run.sae_folder, batches) for run in trained}

    runs = {
        run.name: {
            "tokens_per_s": run.tokens_per_s,
            "peak_rss_gb": run.peak_rss_gb,
            "fvu": scores[run.name].fvu,
            "l0": scores[run.name].l0,
            "ce_loss_recovered": scores[run.name].ce_loss_recovered,
        }
        for run in trained
    }
    command = " ".join(["bench/compare", *(sys.argv[1:] if argv is None else argv)])
    details = run_details(command, mode, workload, started, trained, scores, limit, batches)
    values = comparison(runs, limit.limit_tokens_per_s, details)
    write_json(json_path, values)
    print(markdown_table(values))
    print(f"wrote {json_path}")
    if benchmarks is not None:
        document = benchmarks.read_text(encoding="utf-8") if benchmarks.exists() else ""
        write_text_atomically(benchmarks, replace_section(document, section_text(values)))
        print(f"wrote the comparison table to {benchmarks}")
    return 0


def run_details(
    command: str,
    mode: str,
    workload: Workload,
    started: datetime.datetime,
    trained: list[TrainedRun],
    scores: dict[str, EvalResult],
    limit: PipelineLimit,
    batches: list[torch.Tensor],
) -> dict[str, Any]:
    """Return everything besides the five numbers per run that a reader needs to trust them."""
    return {
        "mode": mode,
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "machine": f"{platform.machine()}, {cpu_model()}, {os.cpu_count()} cores, torch "
        f"{torch.__version__} (CPU kernels: {torch.backends.cpu.get_cpu_capability()})",
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "versions": [TORCH_PIN, *(pin for pins in LIBRARY_PINS.values() for pin in pins)],
        "workload": dataclasses.asdict(workload),
        "eval_tokens_scored": scores[trained[0].name].n_tokens,
        "eval_batches": len(batches),
        "harvest_tokens_per_s": limit.harvest_tokens_per_s,
        "step_tokens_per_s": limit.step_tokens_per_s,
        "load_average_at_end": os.getloadavg()[0],
        "runs": {
            run.name: {
                "training_tokens": run.tokens,
                "training_seconds": run.train_seconds,
                "process_seconds": run.wall_seconds,
                "load_average_at_end": run.load_average,
                "sae_folder": str(run.sae_folder),
                "evaluation": scores[run.name].to_dict(),
            }
            for run in trained
        },
    }


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (ValueError, FileExistsError, RuntimeError) as error:
        # Bad options, a failed child process or a failed venv build: the message says which.
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
