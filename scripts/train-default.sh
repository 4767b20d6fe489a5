#!/usr/bin/env bash
# Set up the environment, then train a TopK SAE on live SmolLM2 activations of the embedded
# Wikipedia summaries and evaluate it spliced into the model. Extra arguments go to
# 'saehooks train' (see 'saehooks train --help').
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
venv="${SAEHOOKS_VENV:-.venv}"
exec "$venv/bin/saehooks" train --out runs/default "$@"
