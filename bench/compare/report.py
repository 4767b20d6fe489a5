"""Write the comparison: ``compare.json`` and the table section of BENCHMARKS.md."""

from __future__ import annotations

import json
import os
import tempfile
import textwrap
from pathlib import Path
from typing import Any

RUN_NAMES = ("saelens", "sparsify", "saehooks_fp32", "saehooks_default")
RUN_KEYS = ("tokens_per_s", "peak_rss_gb", "fvu", "l0", "ce_loss_recovered")
LABELS = {
    "saelens": "SAELens",
    "sparsify": "sparsify",
    "saehooks_fp32": "saehooks, fp32",
    "saehooks_default": "saehooks, defaults",
}
SECTION_START = "<!-- bench/compare: start -->"
SECTION_END = "<!-- bench/compare: end -->"
SECTION_HEADING = "## Side by side with SAELens and sparsify"


def comparison(
    runs: dict[str, dict[str, float]], limit_tokens_per_s: float, details: dict[str, Any]
) -> dict[str, Any]:
    """Return the compare.json object: one entry per run, the limit, and ``details``.

    Raises:
        ValueError: a run is missing, or a run lacks one of ``RUN_KEYS`` or has others.
    """
    missing = [name for name in RUN_NAMES if name not in runs]
    if missing:
        raise ValueError(f"runs {missing} are missing; expected all of {list(RUN_NAMES)}")
    for name in RUN_NAMES:
        if set(runs[name]) != set(RUN_KEYS):
            raise ValueError(
                f"run {name!r} has keys {sorted(runs[name])}; expected exactly {list(RUN_KEYS)}"
            )
    values: dict[str, Any] = {
        name: {key: runs[name][key] for key in RUN_KEYS} for name in RUN_NAMES
    }
    values["limit_tokens_per_s"] = limit_tokens_per_s
    values["details"] = details
    return values


def markdown_table(values: dict[str, Any]) -> str:
    """Return the Markdown table of a compare.json object, one row per run."""
    saelens_speed = values["saelens"]["tokens_per_s"]
    limit = values["limit_tokens_per_s"]
    lines = [
        "| run | tokens/s | × SAELens | % of fp32 limit | peak RSS (GB) | FVU | L0 | "
        "CE loss recovered |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in RUN_NAMES:
        run = values[name]
        speed = run["tokens_per_s"]
        lines.append(
            f"| {LABELS[name]} | {speed:,.0f} | {speed / saelens_speed:.2f} | "
            f"{speed / limit:.0%} | {run['peak_rss_gb']:.2f} | {run['fvu']:.3f} | "
            f"{run['l0']:.1f} | {run['ce_loss_recovered']:.3f} |"
        )
    return "\n".join(lines)


def replace_section(document: str, section: str) -> str:
    """Return ``document`` with the text between the section markers replaced by ``section``.

    A document without the markers gets a new section, with its heading, at the end.

    Raises:
        ValueError: only one marker is present, or they are out of order.
    """
    start, end = document.find(SECTION_START), document.find(SECTION_END)
    if start == -1 and end == -1:
        block = f"{SECTION_HEADING}\n\n{SECTION_START}\n{section}\n{SECTION_END}\n"
        return document.rstrip("\n") + "\n\n" + block
    if start == -1 or end == -1 or end < start:
        raise ValueError(
            f"the document must contain {SECTION_START!r} before {SECTION_END!r}, or neither; "
            "fix the markers by hand"
        )
    return document[: start + len(SECTION_START)] + "\n" + section + "\n" + document[end:]


def write_text_atomically(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path`` and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
        os.chmod(temporary, 0o644)  # mkstemp makes the file private to its owner
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_json(path: Path, values: dict[str, Any]) -> None:
    """Write ``values`` as indented JSON, atomically."""
    write_text_atomically(path, json.dumps(values, indent=2) + "\n")


def section_text(values: dict[str, Any]) -> str:
    """Return the BENCHMARKS.md section for a compare.json object: setup, table and limit."""
    details = values["details"]
    workload = details["workload"]
    loads = ", ".join(
        f"{name} {run['load_average_at_end']:.1f}" for name, run in details["runs"].items()
    )
    threads = details["omp_num_threads"] or "unset"
    paragraphs = [
        f"Command: `.venv/bin/python {details['command']}` ({details['mode']} mode), run on "
        f"{details['date']}. Output: the table below and `bench/results/"
        f"compare{'-short' if details['mode'] == 'short' else ''}.json`. Machine: "
        f"{details['machine']}, torch threads: {details['torch_threads']} "
        f"(OMP_NUM_THREADS {threads}).",
        "",
        f"Workload for every library: SmolLM2-135M-Instruct, `blocks.6.hook_resid_post`, "
        f"TopK k={workload['k']}, d_sae={workload['d_sae']}, "
        f"{workload['train_tokens']:,} training activations in batches of "
        f"{workload['batch_tokens']:,}, contexts of {workload['context_size']} tokens from "
        "the wiki corpus (its training split), fp32; every other setting is the library's "
        f"default. Versions: {', '.join(details['versions'])}. Each run is a child process, "
        "and tokens/s divides the training tokens by its whole wall time: start-up, model "
        "loading, tokenisation, harvest, training and saving. Peak RSS is the child's. "
        "saehooks's evaluator scored every SAE on the same "
        f"{details['eval_tokens_scored']:,} held-out tokens.",
        "",
        markdown_table(values),
        "",
        f"fp32 pipeline limit, measured in the same run: "
        f"{values['limit_tokens_per_s']:,.0f} tokens/s, from a harvest through layer 6 at "
        f"{details['harvest_tokens_per_s']:,.0f} tokens/s and TopK training steps at "
        f"{details['step_tokens_per_s']:,.0f} tokens/s, run in turn. One-minute load "
        f"average at the end of each run: {loads}.",
    ]
    return "\n".join(_wrap(paragraph) for paragraph in paragraphs)


def _wrap(paragraph: str) -> str:
    """Wrap a prose paragraph at 100 columns; leave tables and blank lines as they are."""
    if not paragraph or paragraph.startswith("|"):
        return paragraph
    return textwrap.fill(paragraph, width=100, break_long_words=False, break_on_hyphens=False)
