"""Run one benchmark step as a child process and measure its wall time and peak RSS."""

from __future__ import annotations

import logging
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChildRun:
    """Wall time and peak memory of one finished child process."""

    seconds: float
    """Wall time from start to exit."""
    peak_rss_gb: float
    """Maximum resident set size of the child, in GB (10**9 bytes)."""


def run_child(
    command: list[str], log_path: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> ChildRun:
    """Run ``command`` with stdout and stderr in ``log_path`` and return its measurements.

    The peak RSS comes from ``os.wait4`` for this child alone (Linux reports ``ru_maxrss`` in
    KiB), so earlier children and this process do not count.

    Raises:
        RuntimeError: the child exited with a non-zero status; the message names the log file.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    logger.info("running %s (log: %s)", " ".join(command), log_path)
    with open(log_path, "w", encoding="utf-8") as log:
        start = time.perf_counter()
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-20:]
        raise RuntimeError(
            f"{command[0]} exited with status {child.returncode}; see {log_path}. "
            "Last lines:\n" + "\n".join(tail)
        )
    run = ChildRun(seconds=seconds, peak_rss_gb=usage.ru_maxrss * 1024 / 1e9)
    logger.info("%s finished in %.0f s, peak RSS %.2f GB", command[0], seconds, run.peak_rss_gb)
    return run
