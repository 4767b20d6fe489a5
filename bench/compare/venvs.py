"""Virtual environments for the other libraries, built once and reused while their pins hold.

Each library gets its own venv under ``<saehooks cache>/bench-venvs/<name>``. torch is installed
first and pinned (2.13.0, the CPU wheel that this machine's pip configuration finds on local
disk), because both libraries leave torch unpinned and a fresh resolve pulls a CUDA build of
several GB. The library itself is then installed with torch held at that version.

A venv is reused when its stamp file lists the same pins and Python version. Otherwise it is
deleted and rebuilt, and the stamp is written last, so an interrupted install is rebuilt too.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from saehooks.hosts.smollm2 import cache_dir

logger = logging.getLogger(__name__)

TORCH_PIN = "torch==2.13.0"
LIBRARY_PINS: dict[str, tuple[str, ...]] = {
    "saelens": ("sae-lens==6.54.12",),
    "sparsify": ("eai-sparsify==1.3.3",),
}
STAMP_FILENAME = ".bench-pins"


def venv_root() -> Path:
    """Return the folder that contains the benchmark venvs (``<saehooks cache>/bench-venvs``)."""
    return cache_dir() / "bench-venvs"


def expected_stamp(name: str) -> str:
    """Return the stamp text for venv ``name``: its pins and the Python version that builds it."""
    if name not in LIBRARY_PINS:
        raise ValueError(f"unknown benchmark venv {name!r}; use one of {sorted(LIBRARY_PINS)}")
    python = f"python {sys.version_info.major}.{sys.version_info.minor}"
    return "\n".join([python, TORCH_PIN, *LIBRARY_PINS[name]]) + "\n"


def venv_python(name: str, root: Path | None = None) -> Path:
    """Return the Python interpreter of venv ``name``, building the venv when its pins changed."""
    folder = (root or venv_root()) / name
    stamp = folder / STAMP_FILENAME
    expected = expected_stamp(name)
    python = folder / "bin" / "python"
    if stamp.is_file() and stamp.read_text(encoding="utf-8") == expected and python.is_file():
        logger.info("reusing the %s venv in %s", name, folder)
        return python

    if folder.is_dir():
        logger.info("rebuilding the %s venv in %s because its pins changed", name, folder)
        shutil.rmtree(folder)
    elif folder.exists():
        raise FileExistsError(f"{folder} is a file, not a venv; move it away and rerun")
    folder.parent.mkdir(parents=True, exist_ok=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", prefix="torch-pin-") as constraint:
        constraint.write(TORCH_PIN + "\n")
        constraint.flush()
        steps = [
            [sys.executable, "-m", "venv", str(folder)],
            [*pip, TORCH_PIN],
            [*pip, "--constraint", constraint.name, *LIBRARY_PINS[name]],
        ]
        for command in steps:
            run_build_step(name, folder, command)

    temporary = stamp.with_name(stamp.name + ".tmp")
    temporary.write_text(expected, encoding="utf-8")
    temporary.replace(stamp)
    logger.info("built the %s venv in %s", name, folder)
    return python


def run_build_step(name: str, folder: Path, command: list[str]) -> None:
    """Run one step of building venv ``name`` in ``folder``.

    Raises:
        RuntimeError: the step failed; the message names the command and what to do next.
    """
    try:
        subprocess.run(command, check=True)
    except subprocess.CalledProcessError as error:
        raise RuntimeError(
            f"building the {name} venv in {folder} failed with status {error.returncode} at "
            f"`{' '.join(command)}`; check that PyPI is reachable and rerun, which rebuilds the "
            "venv because its stamp file is missing"
        ) from error
