"""Walk-through: train an SAE on SmolLM2, evaluate it spliced in, and read what its latents mean.

Run it from the repository root after the set-up in the README:

    .venv/bin/python tutorials/train_and_inspect.py            # about 15 minutes on 2 cores
    .venv/bin/python tutorials/train_and_inspect.py --short    # about a minute, smaller SAE

Each step prints what it found. The steps use the same Python API as the ``saehooks`` command.
"""

from __future__ import annotations

import argparse
import itertools
import logging
from pathlib import Path

import torch

from saehooks.evaluation.evaluate import format_table
from saehooks.evaluation.saved_run import evaluate_saved
from saehooks.hosts import load_host
from saehooks.io import load_sae
from saehooks.sae import SAEConfig
from saehooks.training.config import DataConfig, TrainingConfig
from saehooks.training.pipeline import token_stream, train_sae


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="a small, fast run")
    parser.add_argument("--out", type=Path, default=Path("runs/tutorial"), help="run folder")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.manual_seed(0)

    # 1. The host: SmolLM2-135M-Instruct, with TransformerLens hook names.
    host = load_host("smollm2")
    hook_name = "blocks.6.hook_resid_post"
    print(f"host {host.model_name}: {host.n_layers} layers, d_model {host.d_model}")

    # 2. Train a TopK SAE on live activations of the wiki corpus.
    tokens, d_sae, eval_tokens = (30_000, 1152, 2048) if args.short else (1_000_000, 4608, 24_576)
    data_cfg = DataConfig(hook_name=hook_name, buffer_tokens=16_384 if args.short else 131_072)
    train_cfg = TrainingConfig(total_tokens=tokens, lr_warmup_steps=5 if args.short else 50)
    sae_cfg = SAEConfig(d_in=host.d_model, d_sae=d_sae, architecture="topk", k=32)
    outcome = train_sae(sae_cfg, data_cfg, train_cfg, args.out, host=host, progress=not args.short)
    print(f"trained on {outcome.result.tokens:,} activations; saved to {outcome.sae_dir}")

    # 3. Splice it back in on held-out documents and score it.
    result, _ = evaluate_saved(outcome.run_dir, eval_tokens=eval_tokens, host=host)
    print(format_table(result))

    # 4. Which held-out contexts make a few latents fire hardest?
    sae = load_sae(outcome.sae_dir)
    contexts = torch.cat(list(itertools.islice(token_stream(data_cfg, host).batches("eval", 8), 4)))
    acts = host.harvest(contexts, [hook_name])[hook_name]  # [B, T, d_in]
    with torch.no_grad():
        latents = sae.encode(acts)[:, 1:]  # [B, T - 1, d_sae], BOS left out
    firing = (latents > 0).float().mean(dim=(0, 1))  # [d_sae]
    chosen = firing.argsort(descending=True)[10:13].tolist()  # common, but not the most common
    for latent in chosen:
        print(f"\nlatent {latent} (fires on {firing[latent]:.1%} of tokens), top contexts:")
        for line in top_contexts(host.tokenizer, contexts, latents[..., latent], count=3):
            print("  " + line)


def top_contexts(tokenizer, contexts: torch.Tensor, values: torch.Tensor, count: int) -> list[str]:
    """Format the ``count`` strongest activations as the text before the token and the token.

    ``values`` is ``[B, T - 1]`` for positions 1..T-1 of ``contexts`` ``[B, T]``.
    """
    lines = []
    flat_order = values.flatten().argsort(descending=True)[:count]
    for flat_index in flat_order.tolist():
        row, column = divmod(flat_index, values.shape[1])
        position = column + 1  # values skip the BOS position
        before = tokenizer.decode(contexts[row, max(1, position - 8) : position])
        token = tokenizer.decode(contexts[row, position : position + 1])
        value = values[row, column].item()
        lines.append(f"{value:7.2f}  ...{before}[[{token}]]".replace("\n", " "))
    return lines


if __name__ == "__main__":
    main()
