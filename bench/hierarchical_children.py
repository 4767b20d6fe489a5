"""Count the children of a trained hierarchical SAE that learned anything.

    .venv/bin/python bench/hierarchical_children.py runs/arch/hierarchical [--eval-tokens 8192]

A child counts as learned when at least one of its latents fires on held-out tokens (the split
that ``saehooks eval`` uses) and at least one of its decoder rows turned away from its initial
direction (cosine similarity below 0.99). The initial SAE is rebuilt from the training seed in
``run.json``, which reproduces the initialisation exactly.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import torch

from saehooks.hosts import load_host
from saehooks.io import load_sae
from saehooks.sae import HierarchicalSAE, child_usage
from saehooks.training.config import DataConfig
from saehooks.training.pipeline import token_stream
from saehooks.training.trainer import new_sae


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a run folder written by 'saehooks train'")
    parser.add_argument("--eval-tokens", type=int, default=8192, help="held-out tokens to encode")
    args = parser.parse_args()

    run = json.loads((args.run_dir / "run.json").read_text())
    sae = load_sae(args.run_dir / "sae")
    if not isinstance(sae, HierarchicalSAE):
        raise SystemExit(
            f"{args.run_dir} contains a {sae.cfg.architecture} SAE, not a hierarchical one"
        )
    initial = new_sae(sae.cfg, seed=run["training"]["seed"])

    data_cfg = DataConfig(**{**run["data"], "hook_name": sae.cfg.hook_name})
    host = load_host(data_cfg.model)
    batch_size = 8
    n_batches = max(1, args.eval_tokens // (data_cfg.context_size * batch_size))
    fired = torch.zeros(sae.cfg.d_sae, dtype=torch.bool)
    batches = token_stream(data_cfg, host).batches("eval", batch_size)
    for tokens in itertools.islice(batches, n_batches):
        x = host.harvest(tokens, [sae.cfg.hook_name])[sae.cfg.hook_name][:, 1:]  # BOS dropped
        with torch.no_grad():
            fired |= (sae.encode(x.float()) > 0).reshape(-1, sae.cfg.d_sae).any(dim=0)

    usage = child_usage(sae, initial, fired)
    print(json.dumps(usage._asdict()))


if __name__ == "__main__":
    main()
