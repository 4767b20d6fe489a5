"""Walk-through: splice an SAE into SmolLM2, find latents for a concept, ablate them and steer.

Run it from the repository root after the set-up in the README:

    .venv/bin/python tutorials/steering.py            # a few minutes on 2 cores
    .venv/bin/python tutorials/steering.py --short    # fewer documents and tokens, faster

The SAE is the first of: ``--sae PATH``, ``runs/default/sae`` (from scripts/train-default.sh),
the TopK SAE shipped in ``pretrained/``, or a small one trained here on 30,000 activations.
``--train`` skips the first three.

The concept is a word of the wiki corpus ("music" unless ``--concept`` names another). The
latents that fire more on that word than on other tokens stand for it. Ablating them while the
SAE is spliced with its error term changes only what those latents wrote, and adding the
strongest one's decoder direction steers what the model writes next. The tutorial then checks
the steering: how often the concept word occurs in the plain and the steered continuation, and
on how many of their tokens the steered latent fires when the model reads them unsteered.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import re
from pathlib import Path

import torch

from saehooks import pretrained
from saehooks.data import load_corpus
from saehooks.evaluation import next_token_cross_entropy
from saehooks.hosts import Host, load_host
from saehooks.hosts.sae_splice import ablate_latents, steer_latents
from saehooks.io import load_sae
from saehooks.sae import SAEConfig
from saehooks.training.config import DataConfig, TrainingConfig
from saehooks.training.pipeline import train_sae

HOOK = "blocks.6.hook_resid_post"
PRETRAINED_ID = "smollm2-l6-topk32"
CONTEXT = 64  # tokens per document, BOS included
MAX_ELSEWHERE = 0.05  # concept latents fire on at most this fraction of the other tokens
# Steering adds this multiple of the latent's peak activation on the word. Tried with the shipped
# layer-6 SAE, "music" and the prompt below (greedy decoding, 16 tokens): 0.75 left the topic
# alone, 1.5 put "music" into a fluent continuation, and 2.3 or 3 ended in "about about about".
STEER_MULTIPLE = 1.5


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="fewer documents and tokens")
    parser.add_argument("--sae", type=Path, default=None, help="a saved SAE folder at " + HOOK)
    parser.add_argument("--train", action="store_true", help="train a small SAE first")
    parser.add_argument("--concept", default="music", help="a word of the wiki corpus")
    parser.add_argument("--out", type=Path, default=Path("runs/steering"), help="run folder")
    parser.add_argument(
        "--backend", choices=("transformer_lens", "nnsight"), default="transformer_lens"
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.manual_seed(0)

    # 1. The host and an SAE at blocks.6.hook_resid_post.
    host = load_host("smollm2", backend=args.backend)
    sae, source = choose_sae(args, host)
    sae = sae.float().requires_grad_(False)
    print(f"SAE from {source}: {sae.cfg.d_sae} latents at {HOOK}, {args.backend} host")

    # 2. Documents that use the concept word, and where the word is.
    tokens, concept_mask = concept_documents(host, args.concept, count=24 if args.short else 64)
    print(f"{int(concept_mask.sum())} occurrences of {args.concept!r} in {len(tokens)} documents")

    # 3. Latents that fire more on the word than elsewhere, read from the host's cache.
    with host.splice_saes([sae], use_error_term=True):
        acts = host.run_with_cache(tokens, [f"{HOOK}.hook_sae_acts"]).cache[f"{HOOK}.hook_sae_acts"]
    others = ~concept_mask
    others[:, 0] = False  # BOS
    score = acts[concept_mask].mean(dim=0) - acts[others].mean(dim=0)  # [d_sae]
    # Latents that fire on many tokens move every prediction, so only rare ones qualify.
    score[(acts[others] > 0).float().mean(dim=0) > MAX_ELSEWHERE] = -torch.inf
    latents = score.topk(3).indices.tolist()
    for latent in latents:
        on_word = (acts[concept_mask][:, latent] > 0).float().mean().item()
        elsewhere = (acts[others][:, latent] > 0).float().mean().item()
        print(f"latent {latent}: fires on {on_word:.0%} of the word, {elsewhere:.1%} elsewhere")

    # 4. Ablate them: the loss of predictions made at the word should rise most.
    print("\nnext-token loss (nats)       at the word   elsewhere")
    with host.splice_saes([sae], use_error_term=True):
        print(loss_line("SAE spliced, no edit", host, tokens, concept_mask, others))
        with ablate_latents(sae, latents):
            print(loss_line("concept latents ablated", host, tokens, concept_mask, others))

    # 5. Steer generation along the strongest latent's decoder direction.
    prompt = "My favourite weekend activity is"
    latent = latents[0]
    scale = STEER_MULTIPLE * acts[concept_mask][:, latent].max().item()
    steps = 12 if args.short else 24
    with host.splice_saes([sae], use_error_term=True):
        plain = generate(host, prompt, steps)
        with steer_latents(sae, latent, scale):
            steered = generate(host, prompt, steps)
    plain_text = host.tokenizer.decode(plain[0, -steps:])
    steered_text = host.tokenizer.decode(steered[0, -steps:])
    print(f"\nprompt:  {prompt!r}")
    print(f"plain:   {plain_text!r}")
    print(f"steered: {steered_text!r} (latent {latent} raised by {scale:.1f})")

    # 6. Check that the steered text moved toward the concept. The model reads each
    # continuation back without steering, so the latent responds to the text, not to the edit.
    print("\nin the continuation              plain   steered")
    words = [word_count(text, args.concept) for text in (plain_text, steered_text)]
    print(f"{'words starting with ' + repr(args.concept):<32} {words[0]:5d}   {words[1]:7d}")
    fires = [firing_fraction(host, sae, ids, latent, steps) for ids in (plain, steered)]
    print(f"{f'tokens latent {latent} fires on':<32} {fires[0]:5.0%}   {fires[1]:7.0%}")


def choose_sae(args: argparse.Namespace, host: Host) -> tuple[torch.nn.Module, str]:
    """Return the SAE the module doc names first that exists, and where it came from."""
    default_run = Path("runs/default/sae")
    if args.sae is not None and not args.train:
        return load_sae(args.sae), str(args.sae)
    if (default_run / "cfg.json").is_file() and not args.train:
        return load_sae(default_run), str(default_run)
    if not args.train:
        try:
            return pretrained.load(PRETRAINED_ID), f"pretrained/{PRETRAINED_ID}"
        except (KeyError, FileNotFoundError, ValueError) as error:
            print(f"no pretrained SAE ({error}); training a small one")
    data_cfg = DataConfig(hook_name=HOOK, buffer_tokens=16_384)
    train_cfg = TrainingConfig(total_tokens=30_000, lr_warmup_steps=5)
    sae_cfg = SAEConfig(d_in=host.d_model, d_sae=1152, architecture="topk", k=32)
    outcome = train_sae(sae_cfg, data_cfg, train_cfg, args.out, host=host, progress=False)
    return load_sae(outcome.sae_dir), str(outcome.sae_dir)


def concept_documents(host: Host, word: str, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``count`` wiki documents that contain ``word`` as ``[count, CONTEXT]`` token ids
    with BOS at position 0, and the ``[count, CONTEXT]`` mask of the word's tokens."""
    word_ids = {host.tokenizer(f" {form}").input_ids[-1] for form in (word, word.capitalize())}
    rows = []
    for text in load_corpus("wiki"):
        ids = [host.bos_token_id, *host.tokenizer(text).input_ids][:CONTEXT]
        if len(ids) == CONTEXT and any(token in word_ids for token in ids):
            rows.append(ids)
        if len(rows) == count:
            break
    if not rows:
        raise SystemExit(f"no document of {CONTEXT} tokens in the wiki corpus contains {word!r}")
    tokens = torch.tensor(rows)  # [count, CONTEXT]
    mask = torch.isin(tokens, torch.tensor(sorted(word_ids)))  # [count, CONTEXT]
    return tokens, mask


def loss_line(label: str, host: Host, tokens, concept_mask, others) -> str:
    """Mean loss of the predictions made at the concept word and at other tokens."""
    losses = next_token_cross_entropy(host.logits(tokens), tokens)  # [B, T-2], at 1 .. T-2
    at_word = losses[concept_mask[:, 1:-1]].mean().item()
    elsewhere = losses[others[:, 1:-1]].mean().item()
    return f"{label:<26} {at_word:11.3f} {elsewhere:11.3f}"


def generate(host: Host, prompt: str, steps: int) -> torch.Tensor:
    """Greedily continue ``prompt`` by ``steps`` tokens with every active splice applied.

    Returns the token ids ``[1, T]``: BOS, the prompt and the continuation.
    """
    ids = torch.tensor([[host.bos_token_id, *host.tokenizer(prompt).input_ids]])
    for _ in itertools.repeat(None, steps):
        next_id = host.logits(ids)[0, -1].argmax()
        ids = torch.cat([ids, next_id.view(1, 1)], dim=1)
    return ids


def word_count(text: str, word: str) -> int:
    """Count the words of ``text`` that start with ``word``, ignoring case ("Music", "musical")."""
    return sum(token.startswith(word.lower()) for token in re.findall(r"\w+", text.lower()))


def firing_fraction(
    host: Host, sae: torch.nn.Module, ids: torch.Tensor, latent: int, steps: int
) -> float:
    """Return the fraction of the last ``steps`` tokens of ``ids`` on which ``latent`` fires.

    The SAE is spliced with its error term and no edit, so the host computes its usual output.
    """
    with host.splice_saes([sae], use_error_term=True):
        acts = host.run_with_cache(ids, [f"{HOOK}.hook_sae_acts"]).cache[f"{HOOK}.hook_sae_acts"]
    return (acts[0, -steps:, latent] > 0).float().mean().item()


if __name__ == "__main__":
    main()
