"""Evaluate a saved SAE on the held-out split it was trained beside."""

from __future__ import annotations

import itertools
import json
import logging
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from saehooks.data import TokenStream, load_corpus
from saehooks.evaluation.evaluate import EvalResult, run_evaluation, write_metrics
from saehooks.evaluation.plots import write_report
from saehooks.hosts import Backend, Host, load_host
from saehooks.io import load_sae

logger = logging.getLogger(__name__)

METRICS_FILENAME = "metrics.json"
SAE_SUBFOLDER = "sae"


def find_sae_folder(path: str | Path) -> Path:
    """The SAE folder at ``path``: the folder itself, or its ``sae/`` subfolder for a run folder."""
    path = Path(path)
    if (path / "cfg.json").is_file():
        return path
    if (path / SAE_SUBFOLDER / "cfg.json").is_file():
        return path / SAE_SUBFOLDER
    raise FileNotFoundError(
        f"no saved SAE at {path}: expected cfg.json there or in {path / SAE_SUBFOLDER}. "
        "Pass a run folder written by 'saehooks train' or a folder saved by save_sae"
    )


def evaluate_saved(
    path: str | Path,
    eval_tokens: int = 24_576,
    batch_size: int = 8,
    host: Host | None = None,
    corpus: str | None = None,
    progress: bool = True,
    backend: Backend = "transformer_lens",
    report: bool = True,
    out_dir: str | Path | None = None,
) -> tuple[EvalResult, Path]:
    """Evaluate the SAE at ``path`` and write ``metrics.json`` to the evaluation folder.

    The host, hook, corpus, context size and held-out fraction come from the SAE's ``cfg.json``
    (its metadata as written by ``saehooks train``); ``corpus`` overrides the corpus. Exactly
    ``eval_tokens`` held-out tokens after BOS are evaluated (the result's ``n_tokens``) when the
    held-out split has that many: whole contexts, with the last one or two cut short (see
    ``context_lengths``). Returns the result and the path of the metrics file. The files go
    into ``out_dir`` when it is given, and otherwise into the folder that
    ``evaluation_folder`` picks, which is never a bare SAE folder. ``progress`` shows a progress
    bar over the batches on stderr. ``backend`` chooses the host library when ``host`` is None.
    ``report`` also writes ``report.md`` and, with matplotlib installed, the feature-density and
    L0 histograms beside the metrics file.
    """
    if eval_tokens < 2:
        raise ValueError(
            f"eval_tokens={eval_tokens} is too few; evaluate at least 2 tokens, so that one "
            "next-token prediction is scored"
        )
    sae_dir = find_sae_folder(path)
    sae = load_sae(sae_dir)
    metadata = _read_metadata(sae_dir)
    context_size = int(metadata.get("context_size", 128))
    lengths = context_lengths(eval_tokens, context_size - 1)
    # An invalid corpus spec raises here, before the slow host load.
    documents = load_corpus(
        corpus or metadata.get("corpus", "wiki"), metadata.get("text_field", "text")
    )
    if host is None:
        # "host_model" is the model as the user named it (for example "smollm2", the embedded
        # GGUF conversion); "model_name" may be a hub name that loads other weights when online.
        model = metadata.get("host_model") or metadata.get("model_name") or "smollm2"
        host = load_host(model, backend=backend)
    hook_name = host.resolve_hook(sae.cfg.hook_name or metadata["hook_name"])
    stream = TokenStream(
        documents,
        host.tokenizer,
        context_size=context_size,
        bos_token_id=host.bos_token_id,
        eval_fraction=float(metadata.get("eval_fraction", 0.03)),
    )
    batches = tqdm(
        held_out_batches(stream, lengths, batch_size),
        total=count_batches(lengths, batch_size),
        desc="evaluating",
        unit="batch",
        disable=not progress,
    )
    evaluation = run_evaluation(host, sae, batches, hook_name)
    if evaluation.result.n_tokens < eval_tokens:
        logger.warning(
            "the held-out split ran out after %d of the %d requested tokens",
            evaluation.result.n_tokens,
            eval_tokens,
        )

    folder = Path(out_dir) if out_dir is not None else evaluation_folder(sae_dir, corpus)
    metrics_path = write_metrics(evaluation.result, folder / METRICS_FILENAME)
    logger.info("wrote %s", metrics_path)
    if report:
        files = write_report(evaluation, folder, f"{sae.cfg.architecture} SAE at {hook_name}")
        logger.info("wrote %s", ", ".join(str(p) for p in [files.report, *files.pictures]))
    return evaluation.result, metrics_path


def evaluation_folder(sae_dir: Path, corpus: str | None = None) -> Path:
    """Return the default folder for the evaluation files of the SAE saved in ``sae_dir``.

    For the ``sae/`` folder of a run it is the run folder, or ``eval-<corpus>/`` inside it when
    ``corpus`` overrides the training corpus, so that the run's own ``metrics.json`` stays. For
    a bare SAE folder (a copy of a shipped dictionary, for example) it is the sibling folder
    ``<name>-eval``, so that the SAE's folder keeps only the SAE.
    """
    if sae_dir.name != SAE_SUBFOLDER:
        return sae_dir.parent / f"{sae_dir.name}-eval"
    run_dir = sae_dir.parent
    if corpus is None:
        return run_dir
    # Letters, digits, dots, dashes and underscores of the corpus spec, at most 60 of them.
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(corpus).name or corpus).strip("._")[:60]
    return run_dir / f"eval-{slug or 'corpus'}"


def context_lengths(eval_tokens: int, body_size: int) -> list[int]:
    """Split ``eval_tokens`` into the token counts after BOS of consecutive held-out contexts.

    Every context contains ``body_size`` tokens after BOS except the last one or two, which are cut
    so that the counts add up to ``eval_tokens``. A context needs at least 2 tokens after BOS
    (evaluation scores predictions made after BOS), so a remainder of 1 is covered by a full
    context shortened by one and a context of 2. With ``body_size`` 2 an odd ``eval_tokens``
    cannot be met and the sum is ``eval_tokens - 1``.
    """
    if body_size < 2:
        raise ValueError(
            f"contexts of {body_size + 1} tokens are too short to evaluate; the SAE's "
            "context_size must be at least 3"
        )
    full, rest = divmod(eval_tokens, body_size)
    lengths = [body_size] * full
    if rest >= 2:
        lengths.append(rest)
    elif rest == 1 and full >= 1 and body_size >= 3:
        lengths[-1:] = [body_size - 1, 2]
    return lengths


def held_out_batches(
    stream: TokenStream, lengths: list[int], batch_size: int
) -> Iterator[torch.Tensor]:
    """Yield ``[B, 1 + length]`` batches of held-out contexts cut to ``lengths``.

    Consecutive contexts of one length share a batch of at most ``batch_size`` rows. The
    batches stop early when the held-out split has fewer contexts than ``lengths``.
    """
    pending: list[torch.Tensor] = []
    for length, context in zip(lengths, stream.contexts("eval"), strict=False):
        cut = context[: length + 1]  # BOS and `length` tokens
        if pending and (len(pending) == batch_size or len(pending[0]) != len(cut)):
            yield torch.stack(pending)  # [B, 1 + length]
            pending = []
        pending.append(cut)
    if pending:
        yield torch.stack(pending)


def count_batches(lengths: list[int], batch_size: int) -> int:
    """Return how many batches ``held_out_batches`` yields for ``lengths`` from a long split."""
    groups = [len(list(group)) for _, group in itertools.groupby(lengths)]
    return sum(math.ceil(size / batch_size) for size in groups)


def _read_metadata(sae_dir: Path) -> dict[str, Any]:
    values = json.loads((sae_dir / "cfg.json").read_text(encoding="utf-8"))
    metadata = dict(values.get("metadata") or {})
    for key in ("model_name", "hook_name"):
        metadata.setdefault(key, values.get(key))
    return metadata
