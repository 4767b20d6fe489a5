"""Tabulate the dead-latent runs that ``bench/dead_latents.py`` leaves in a folder.

    .venv/bin/python bench/dead_latents_table.py runs/dead [--out bench/results/dead_latents.json]

For each run folder with a ``metrics.json`` it prints one Markdown table row: the fraction of
latents that did not fire in the last training window (``dead/fraction`` of the final step), the
fraction that did not fire on the evaluated tokens, FVU, L0, CE loss recovered and the remedy's
own counts.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

ORDER = ["none", "anthropic", "ghost_grads", "auxk", "reinit", "residual_svd", "bias_boost"]


def last_line(path: Path) -> dict[str, float]:
    return json.loads(path.read_text(encoding="utf-8").splitlines()[-1])


def collect(folder: Path) -> list[dict[str, float | str]]:
    rows: list[dict[str, float | str]] = []
    runs = [folder / name for name in ORDER if (folder / name / "metrics.json").exists()]
    for run in runs:
        evaluation = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
        training = last_line(run / "train_metrics.jsonl")
        result = json.loads((run / "run.json").read_text(encoding="utf-8"))["result"]
        rows.append(
            {
                "remedy": run.name,
                "train_dead_fraction": training["dead/fraction"],
                "eval_dead_fraction": evaluation["dead_fraction"],
                "fvu": evaluation["fvu"],
                "l0": evaluation["l0"],
                "ce_loss_recovered": evaluation["ce_loss_recovered"],
                "resampled_total": training.get("dead/resampled_total", 0.0),
                "revived": training.get("dead/revived", 0.0),
                "train_seconds": result["seconds"],
            }
        )
    return rows


def markdown(rows: list[dict[str, float | str]]) -> str:
    header = (
        "| remedy | dead, last 50k training tokens | dead on eval tokens | FVU | L0 | "
        "CE loss recovered | latents rewritten | revived | training s |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    lines = [header]
    for row in rows:
        lines.append(
            f"| {row['remedy']} | {row['train_dead_fraction']:.3f} | "
            f"{row['eval_dead_fraction']:.3f} | {row['fvu']:.4f} | {row['l0']:.1f} | "
            f"{row['ce_loss_recovered']:.4f} | {row['resampled_total']:.0f} | "
            f"{row['revived']:.0f} | {row['train_seconds']:.0f} |"
        )
    return "\n".join(lines)


def write_rows(rows: list[dict[str, float | str]], path: Path) -> None:
    """Write the rows as JSON through a temporary file and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="folder holding one run folder per remedy")
    parser.add_argument("--out", type=Path, default=Path("bench/results/dead_latents.json"))
    args = parser.parse_args()
    rows = collect(args.folder)
    write_rows(rows, args.out)
    print(markdown(rows))


if __name__ == "__main__":
    main()
