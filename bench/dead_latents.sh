#!/usr/bin/env bash
# Train the same TopK SAE once per dead-latent remedy (and once without one) on live SmolLM2
# activations at blocks.6.hook_resid_post, one run after another, then tabulate the results.
# Each run: 300k training tokens, evaluated on 8,192 held-out tokens. Runs land in runs/dead/.
# Extra arguments go to every 'saehooks train' call.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${SAEHOOKS_VENV:-.venv}"
remedies="${REMEDIES:-none anthropic ghost_grads auxk reinit residual_svd bias_boost}"
for remedy in $remedies; do
    nice -n 10 "$venv/bin/saehooks" train --out "runs/dead/$remedy" --remedy "$remedy" \
        --architecture topk --d-sae 18432 --k 32 --tokens 300000 --eval-tokens 8192 \
        --dead-window-tokens 50000 --resample-interval-steps 50 --resample-rewarm-steps 10 \
        --quiet "$@" 2>&1 | tee "runs/dead/$remedy.log"
done
"$venv/bin/python" bench/dead_latents_table.py runs/dead
