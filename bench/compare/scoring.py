"""Score every trained SAE with saehooks's evaluator on one list of held-out batches."""

from __future__ import annotations

import itertools
from pathlib import Path

import torch
from workload import HOOK_NAME, Workload

from saehooks.data import TokenStream, load_corpus
from saehooks.evaluation.evaluate import EvalResult, run_evaluation
from saehooks.hosts import Host
from saehooks.io import load_folder

EVAL_BATCH_CONTEXTS = 8


def held_out_batches(host: Host, workload: Workload) -> list[torch.Tensor]:
    """Return the held-out token batches ``[8, context_size]`` that every SAE is scored on.

    They come from the wiki documents that the saehooks token stream holds out, which the
    training text of every library leaves out, and number ``eval_tokens // (8 * context)``
    batches, at least one.
    """
    stream = TokenStream(
        load_corpus("wiki"),
        host.tokenizer,
        context_size=workload.context_size,
        bos_token_id=host.bos_token_id,
        eval_fraction=workload.eval_fraction,
    )
    n_batches = max(1, workload.eval_tokens // (EVAL_BATCH_CONTEXTS * workload.context_size))
    return list(itertools.islice(stream.batches("eval", EVAL_BATCH_CONTEXTS), n_batches))


def score(
    host: Host, sae_folder: Path, batches: list[torch.Tensor], hook_name: str = HOOK_NAME
) -> EvalResult:
    """Load the SAE in ``sae_folder`` with saehooks's readers (any layout) and evaluate it.

    The SAE is cast to float32 and spliced in at ``hook_name``, whatever hook its files name.
    """
    sae = load_folder(sae_folder, hook_name=hook_name, dtype="float32")
    return run_evaluation(host, sae, batches, host.resolve_hook(hook_name)).result
