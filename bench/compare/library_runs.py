"""Train the workload with each library in a child process of its own."""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from children import run_child
from inputs import model_folder
from venvs import venv_python
from workload import (
    HOOK_NAME,
    LAYER,
    SAEHOOKS_DEFAULT_FLAGS,
    SAEHOOKS_FP32_FLAGS,
    SPARSIFY_HOOKPOINT,
    Workload,
)

HERE = Path(__file__).resolve().parent
D_IN = 576
"""Width of SmolLM2-135M's residual stream."""


@dataclass(frozen=True)
class TrainedRun:
    """One library's training run: where its SAE is and what the run cost."""

    name: str
    """Key in compare.json."""
    sae_folder: Path
    """The saved SAE, in the library's own layout."""
    tokens: int
    """Training activations the library reports it consumed."""
    train_seconds: float
    """Time the library reports for its training call; what it covers differs by library."""
    wall_seconds: float
    """Wall time of the whole child process, start-up and model loading included."""
    peak_rss_gb: float
    """Peak resident memory of the child process, in GB."""
    load_average: float
    """One-minute load average when the run ended."""

    @property
    def tokens_per_s(self) -> float:
        """Training tokens per second of the whole child process.

        The process time is measured the same way for every library, while the libraries'
        own training times cover different steps: saehooks's leaves out the first buffer fill,
        SAELens's and sparsify's include their harvest.
        """
        return self.tokens / self.wall_seconds


def foreign_env(work_dir: Path) -> dict[str, str]:
    """Return the environment of a foreign library's child: offline, no wandb, own HF cache."""
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "WANDB_MODE": "disabled",
        "HF_HOME": str(work_dir / "hf-home"),
    }


def train_saelens(workload: Workload, dataset: Path, work_dir: Path) -> TrainedRun:
    """Train with SAELens in its venv and return the run."""
    extra = ("--layer", str(LAYER), "--d-in", str(D_IN))
    return train_foreign("saelens", workload, model_folder(), dataset, work_dir, extra, Path())


def train_sparsify(workload: Workload, dataset: Path, work_dir: Path) -> TrainedRun:
    """Train with sparsify in its venv and return the run."""
    extra = ("--hookpoint", SPARSIFY_HOOKPOINT)
    sae_subfolder = Path("run", SPARSIFY_HOOKPOINT)
    return train_foreign(
        "sparsify", workload, model_folder(), dataset, work_dir, extra, sae_subfolder
    )


def train_foreign(
    name: str,
    workload: Workload,
    model: Path,
    dataset: Path,
    work_dir: Path,
    extra_args: tuple[str, ...],
    sae_subfolder: Path,
) -> TrainedRun:
    """Run ``train_<name>.py`` in the venv of library ``name`` and return the run.

    The script trains on the Hugging Face model folder ``model`` and the text in ``dataset``. It
    gets the workload's arguments plus ``extra_args`` and saves under
    ``work_dir/<name>``. The SAE is in ``sae_subfolder`` of that folder.
    """
    out = work_dir / name
    timing = work_dir / f"{name}-timing.json"
    remove_outputs(out, timing)
    command = [
        str(venv_python(name)),
        str(HERE / f"train_{name}.py"),
        *("--model", str(model), "--dataset", str(dataset)),
        *("--out", str(out), "--timing", str(timing), *extra_args),
        *("--d-sae", str(workload.d_sae), "--k", str(workload.k)),
        *("--tokens", str(workload.train_tokens), "--batch-tokens", str(workload.batch_tokens)),
        *("--context-size", str(workload.context_size)),
    ]
    child = run_child(command, work_dir / f"{name}.log", env=foreign_env(work_dir))
    values = json.loads(timing.read_text(encoding="utf-8"))
    return TrainedRun(
        name=name,
        sae_folder=out / sae_subfolder,
        tokens=int(values["tokens"]),
        train_seconds=float(values["seconds"]),
        wall_seconds=child.seconds,
        peak_rss_gb=child.peak_rss_gb,
        load_average=os.getloadavg()[0],
    )


def saehooks_command(workload: Workload, out: Path, flags: tuple[str, ...]) -> list[str]:
    """Return the ``saehooks train`` command line of the workload, with ``flags`` appended."""
    return [
        sys.executable,
        *("-m", "saehooks.cli", "train", "--out", str(out), "--overwrite", "--quiet"),
        *("--eval-tokens", "0", "--architecture", "topk", "--hook-name", HOOK_NAME),
        *("--d-sae", str(workload.d_sae), "--k", str(workload.k)),
        *("--tokens", str(workload.train_tokens), "--batch-size", str(workload.batch_tokens)),
        *("--context-size", str(workload.context_size)),
        *("--eval-fraction", str(workload.eval_fraction)),
        *flags,
    ]


def train_saehooks(name: str, workload: Workload, work_dir: Path) -> TrainedRun:
    """Train with the ``saehooks train`` command line and return the run.

    ``name`` is ``saehooks_fp32`` or ``saehooks_default`` and picks the flags from ``workload``.
    """
    flags = {"saehooks_fp32": SAEHOOKS_FP32_FLAGS, "saehooks_default": SAEHOOKS_DEFAULT_FLAGS}
    if name not in flags:
        raise ValueError(f"unknown saehooks run {name!r}; use one of {sorted(flags)}")
    out = work_dir / name
    child = run_child(saehooks_command(workload, out, flags[name]), work_dir / f"{name}.log")
    result = json.loads((out / "run.json").read_text(encoding="utf-8"))["result"]
    return TrainedRun(
        name=name,
        sae_folder=out / "sae",
        tokens=int(result["tokens"]),
        train_seconds=float(result["seconds"]),
        wall_seconds=child.seconds,
        peak_rss_gb=child.peak_rss_gb,
        load_average=os.getloadavg()[0],
    )


def remove_outputs(*paths: Path) -> None:
    """Delete an earlier run's files and folders, so a failed run cannot report stale ones."""
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
