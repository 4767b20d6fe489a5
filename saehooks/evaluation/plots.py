"""Pictures and a Markdown report of one evaluation: feature density and L0 histograms.

matplotlib is optional (the ``plots`` extra). Without it ``write_report`` writes the Markdown
report alone and logs a warning.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import NamedTuple

import torch

from saehooks.evaluation.evaluate import Evaluation, create_temporary_beside, format_table

logger = logging.getLogger(__name__)

DENSITY_FILENAME = "feature_density.png"
L0_FILENAME = "l0_histogram.png"
REPORT_FILENAME = "report.md"


class ReportFiles(NamedTuple):
    """The files ``write_report`` wrote."""

    report: Path
    """The Markdown report."""
    pictures: list[Path]
    """The PNG histograms, empty when matplotlib is not installed."""


def log10_density(feature_density: torch.Tensor) -> torch.Tensor:
    """Return log10 of the firing frequencies of the latents that fired, ``[n_alive]``.

    Dead latents (frequency 0) have no logarithm. The report counts them separately.
    """
    alive = feature_density[feature_density > 0]  # [n_alive]
    return alive.log10()


def _write_png(figure: object, path: Path) -> Path:
    """Save a matplotlib figure to a temporary name beside ``path`` and rename it into place."""
    temporary = create_temporary_beside(path)
    try:
        figure.savefig(temporary, format="png", dpi=100)  # type: ignore[attr-defined]  # a Figure
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def draw_histograms(evaluation: Evaluation, folder: Path, title: str) -> list[Path]:
    """Draw the log10 feature-density histogram and the L0 histogram as PNGs in ``folder``.

    Raises:
        ModuleNotFoundError: matplotlib is not installed.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    density = log10_density(evaluation.feature_density).numpy()
    figure = Figure(figsize=(6, 4))
    axes = figure.subplots()
    axes.hist(density, bins=50, color="tab:blue")
    dead = int((evaluation.feature_density == 0).sum())
    axes.set_xlabel("log10 firing frequency (fraction of tokens)")
    axes.set_ylabel("latents")
    axes.set_title(f"{title}: feature density ({dead} dead latents not shown)")
    density_path = _write_png(figure, folder / DENSITY_FILENAME)

    counts = evaluation.l0_counts.double()  # [d_sae + 1]
    last = int(counts.nonzero().max()) if counts.any() else 0
    figure = Figure(figsize=(6, 4))
    axes = figure.subplots()
    axes.bar(range(last + 1), counts[: last + 1].numpy(), width=1.0, color="tab:orange")
    axes.set_xlabel("active latents per token (L0)")
    axes.set_ylabel("tokens")
    axes.set_title(f"{title}: L0 per token")
    l0_path = _write_png(figure, folder / L0_FILENAME)
    return [density_path, l0_path]


def format_report(evaluation: Evaluation, title: str, pictures: list[Path]) -> str:
    """Format the evaluation as a short Markdown report that links the pictures."""
    result = evaluation.result
    density = evaluation.feature_density
    alive = log10_density(density)
    lines = [
        f"# Evaluation of {title}",
        "",
        f"{result.n_tokens:,} real tokens (BOS and padding left out).",
        "",
        "```",
        format_table(result),
        "```",
        "",
        f"- dead latents: {int((density == 0).sum()):,} of {density.numel():,}",
        f"- dense latents (firing on more than {result.dense_threshold:.0%} of tokens): "
        f"{int((density > result.dense_threshold).sum()):,}",
    ]
    if alive.numel():
        median = alive.median().item()
        lines.append(f"- median firing frequency of live latents: 10^{median:.2f}")
    if not math.isnan(result.l0):
        lines.append(f"- mean L0: {result.l0:.2f}")
    lines.append("")
    for picture in pictures:
        lines.append(f"![{picture.stem.replace('_', ' ')}]({picture.name})")
    return "\n".join(lines) + "\n"


def write_report(evaluation: Evaluation, folder: str | Path, title: str) -> ReportFiles:
    """Write the histograms (when matplotlib is installed) and ``report.md`` into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        pictures = draw_histograms(evaluation, folder, title)
    except ModuleNotFoundError:
        logger.warning(
            "matplotlib is not installed, so no histograms were drawn; install the plots "
            "extra: pip install 'saehooks[plots]'"
        )
        pictures = []

    report = folder / REPORT_FILENAME
    temporary = create_temporary_beside(report)
    try:
        with open(temporary, "w", encoding="utf-8") as file:
            file.write(format_report(evaluation, title, pictures))
        os.replace(temporary, report)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return ReportFiles(report, pictures)
