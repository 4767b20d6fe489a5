"""Report how a trained composite SAE uses its parts on held-out tokens.

    .venv/bin/python bench/composite_usage.py runs/arch/hierarchical [--eval-tokens 8192]
    .venv/bin/python bench/composite_usage.py runs/arch/moe [--eval-tokens 8192]

Both read the held-out split that ``saehooks eval`` uses and print one JSON object.

- Hierarchical SAE: the children that learned anything. A child counts as learned when at least
  one of its latents fires on the held-out tokens and at least one of its decoder rows turned
  away from its initial direction (cosine similarity below 0.99). The initial SAE is rebuilt
  from the training seed in ``run.json``, which reproduces the initialisation exactly.
- Mixture of experts: the share of routing slots that each expert receives.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Any

import torch

from saehooks.hosts import load_host
from saehooks.io import load_sae
from saehooks.sae import HierarchicalSAE, MixtureOfExperts, child_usage
from saehooks.training.config import DataConfig
from saehooks.training.pipeline import token_stream
from saehooks.training.trainer import new_sae


def held_out_activations(run: dict[str, Any], hook_name: str, n_tokens: int) -> torch.Tensor:
    """About ``n_tokens`` held-out activations ``[n, d_in]``, BOS positions left out."""
    data_cfg = DataConfig(**{**run["data"], "hook_name": hook_name})
    host = load_host(data_cfg.model)
    batch_size = 8
    n_batches = max(1, n_tokens // (data_cfg.context_size * batch_size))
    batches = token_stream(data_cfg, host).batches("eval", batch_size)
    chunks = [
        host.harvest(tokens, [hook_name])[hook_name][:, 1:].reshape(-1, host.d_model)
        for tokens in itertools.islice(batches, n_batches)
    ]
    return torch.cat(chunks).float()


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a run folder written by 'saehooks train'")
    parser.add_argument("--eval-tokens", type=int, default=8192, help="held-out tokens to encode")
    args = parser.parse_args()

    run = json.loads((args.run_dir / "run.json").read_text())
    sae = load_sae(args.run_dir / "sae")
    if not isinstance(sae, HierarchicalSAE | MixtureOfExperts):
        raise SystemExit(
            f"{args.run_dir} contains a {sae.cfg.architecture} SAE; expected a hierarchical SAE "
            "or a mixture of experts"
        )
    x = held_out_activations(run, sae.cfg.hook_name, args.eval_tokens)  # [n, d_in]

    if isinstance(sae, HierarchicalSAE):
        fired = (sae.encode(x) > 0).any(dim=0)  # [d_sae]
        initial = new_sae(sae.cfg, seed=run["training"]["seed"])
        report: dict[str, Any] = child_usage(sae, initial, fired)._asdict()
    else:
        probs = sae.route(x - sae.b_dec)  # [n, n_experts]
        chosen = probs.topk(sae.cfg.experts_per_token, dim=-1).indices.flatten()
        share = torch.bincount(chosen, minlength=sae.cfg.n_experts).float() / chosen.numel()
        report = {"expert_share": [round(value, 4) for value in share.tolist()]}
    print(json.dumps({"tokens": x.shape[0], **report}))


if __name__ == "__main__":
    main()
