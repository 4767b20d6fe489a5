"""Training-step throughput of each architecture, composites included, without the host.

    .venv/bin/python bench/bench_architectures.py [--steps 10] [--out FILE.json]

It writes bench/results/architectures.json unless ``--out`` names another file.

Each architecture trains at the settings of ``bench/architectures_cached.py`` and
``bench/composites_cached.py`` (d_in 576 as in SmolLM2-135M, d_sae 4608, k 32 where it applies,
batch 1,024, fp32, the default decode mode) on Gaussian inputs, because a step's cost barely
depends on the values. Two warm-up steps, then ``--steps`` timed steps through
``Trainer.train_step``, which includes every tracker the trainer attaches. Reports tokens/s per
architecture, per wall-clock second and per CPU second of this process. On a machine shared with
other jobs the second is the steadier one: with T threads fully used, an idle machine would reach
at most T times it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from saehooks.sae import DeepConfig, HierarchicalConfig, MixtureConfig, SAEConfig
from saehooks.training.config import TrainingConfig
from saehooks.training.trainer import Trainer, new_sae

D_IN, D_SAE, K, BATCH = 576, 4608, 32, 1024
SETTINGS: dict[str, dict[str, object]] = {
    "topk": {"k": K},
    "relu": {"k": None},
    "batchtopk": {"k": K},
    "matryoshka": {"k": K, "matryoshka_widths": (288, 1152, D_SAE)},
    "jumprelu": {"k": None, "jumprelu_threshold": 2.0},
    "gated": {"k": None},
}
COMPOSITES = {"moe": MixtureConfig, "hierarchical": HierarchicalConfig, "deep": DeepConfig}


def bench_architecture(architecture: str, steps: int) -> tuple[float, float]:
    """Time ``steps`` training steps; return tokens per wall-clock second and per CPU second."""
    if architecture in COMPOSITES:
        sae_cfg = COMPOSITES[architecture](d_in=D_IN, d_sae=D_SAE)
    else:
        sae_cfg = SAEConfig(
            d_in=D_IN, d_sae=D_SAE, architecture=architecture, **SETTINGS[architecture]
        )
    trainer = Trainer(new_sae(sae_cfg, seed=0), TrainingConfig(batch_size=BATCH), progress=False)
    generator = torch.Generator().manual_seed(0)
    batches = [torch.randn(BATCH, D_IN, generator=generator) for _ in range(steps + 2)]
    trainer.initialize(torch.cat(batches[:4]))
    for x in batches[:2]:
        trainer.train_step(x)
    start, start_cpu = time.perf_counter(), time.process_time()
    for x in batches[2:]:
        trainer.train_step(x)
    wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    return steps * BATCH / wall, steps * BATCH / cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("bench/results/architectures.json"))
    args = parser.parse_args()

    results = {name: bench_architecture(name, args.steps) for name in [*SETTINGS, *COMPOSITES]}
    report = {
        "tokens_per_s": {name: wall for name, (wall, _) in results.items()},
        "tokens_per_cpu_s": {name: cpu for name, (_, cpu) in results.items()},
        "steps": args.steps,
        "batch_size": BATCH,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "threads": torch.get_num_threads(),
        "load_average_at_end": os.getloadavg(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.out.with_name(args.out.name + ".tmp")
    temporary.write_text(json.dumps(report, indent=2) + "\n")
    temporary.replace(args.out)
    for name, (wall, cpu) in results.items():
        print(f"{name:>12}: {wall:8.0f} tokens/s {cpu:8.0f} tokens per CPU second")


if __name__ == "__main__":
    main()
