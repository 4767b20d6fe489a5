"""Walk-through: load a shipped SmolLM2 dictionary, splice it in, evaluate it, read its latents.

Run it from the repository root after the set-up in the README:

    .venv/bin/python tutorials/pretrained.py            # evaluates 24 held-out batches
    .venv/bin/python tutorials/pretrained.py --short    # evaluates 2 (8 minutes on 2 busy cores)

Nothing is trained: the dictionary comes from ``pretrained/``, listed by
``saehooks pretrained list``. Each step prints what it found.
"""

from __future__ import annotations

import argparse
import itertools
import logging

import torch

from saehooks import pretrained
from saehooks.evaluation.evaluate import evaluate_sae, format_table
from saehooks.hosts import load_host
from saehooks.training.config import DataConfig
from saehooks.training.pipeline import token_stream

DICTIONARY = "smollm2-l6-topk32"
PROMPT = "The Eiffel Tower is a wrought-iron lattice tower in the city of"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="evaluate on fewer tokens")
    parser.add_argument("--id", default=DICTIONARY, help=f"dictionary id (default: {DICTIONARY})")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)

    # 1. The registry: every dictionary with the metrics recorded when it was shipped.
    print(pretrained.format_index(pretrained.read_index()))
    entry = pretrained.find(args.id)

    # 2. Load it. The shipped weights are float16; float32 runs faster on a CPU.
    sae = pretrained.load(args.id, dtype="float32")
    host = load_host("smollm2")
    hook_name = host.resolve_hook(sae.cfg.hook_name)
    print(f"\nloaded {entry.id}: {sae.cfg.architecture} k={sae.cfg.k}, d_sae {sae.cfg.d_sae}")

    # 3. Splice it in: the host runs with the SAE's reconstruction in place of the activation.
    tokens = prompt_tokens(host, PROMPT)
    clean = host.logits(tokens)[0, -1]  # [vocab]
    with host.splice({hook_name: sae}):
        spliced = host.logits(tokens)[0, -1]  # [vocab]
    for label, logits in (("clean", clean), ("spliced", spliced)):
        top = logits.topk(3).indices.tolist()
        print(f"{label:8s} next tokens: {[host.tokenizer.decode([token]) for token in top]}")

    # 4. Evaluate on the held-out wiki documents that training never saw.
    stream = token_stream(DataConfig(hook_name=hook_name), host)
    n_batches = 2 if args.short else 24
    batches = list(itertools.islice(stream.batches("eval", 8), n_batches))
    result = evaluate_sae(host, sae, batches, hook_name)
    print(f"\nmeasured on {result.n_tokens:,} held-out tokens:")
    print(format_table(result))
    print(f"recorded in the index: {entry.metrics}")

    # 5. The latents that fire most often on those documents, with their strongest contexts.
    contexts = torch.cat(batches)  # [B, T]
    acts = host.harvest(contexts, [hook_name])[hook_name]  # [B, T, d_in]
    with torch.no_grad():
        latents = sae.encode(acts)[:, 1:]  # [B, T - 1, d_sae], BOS left out
    firing = (latents > 0).float().mean(dim=(0, 1))  # [d_sae]
    for latent in firing.argsort(descending=True)[:3].tolist():
        print(f"\nlatent {latent} (fires on {firing[latent]:.1%} of tokens), top contexts:")
        for line in strongest_contexts(host.tokenizer, contexts, latents[..., latent], count=3):
            print("  " + line)


def prompt_tokens(host, text: str) -> torch.Tensor:
    """Tokenize ``text`` as one ``[1, T]`` batch with BOS first, as the host expects."""
    ids = host.tokenizer(text, add_special_tokens=False)["input_ids"]
    return torch.tensor([[host.bos_token_id, *ids]])


def strongest_contexts(tokenizer, contexts: torch.Tensor, values: torch.Tensor, count: int):
    """Format the ``count`` largest ``values`` ``[B, T - 1]`` as preceding text and [[token]]."""
    lines = []
    for flat_index in values.flatten().argsort(descending=True)[:count].tolist():
        row, column = divmod(flat_index, values.shape[1])
        position = column + 1  # values skip the BOS position
        before = tokenizer.decode(contexts[row, max(1, position - 8) : position])
        token = tokenizer.decode(contexts[row, position : position + 1])
        line = f"{values[row, column].item():7.2f}  ...{before}[[{token}]]"
        lines.append(line.replace("\n", " "))
    return lines


if __name__ == "__main__":
    main()
