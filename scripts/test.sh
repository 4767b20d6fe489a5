#!/usr/bin/env bash
# Set up the environment, then run the whole test suite (unit tests and SmolLM2 integration tests).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
venv="${SAEHOOKS_VENV:-.venv}"
"$venv/bin/ruff" check saehooks tests bench tutorials
exec "$venv/bin/python" -m pytest "$@"
