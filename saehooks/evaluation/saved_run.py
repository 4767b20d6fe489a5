"""Evaluate a saved SAE on the held-out split it was trained beside."""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path
from typing import Any

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
) -> tuple[EvalResult, Path]:
    """Evaluate the SAE at ``path`` and write ``metrics.json`` beside it.

    The host, hook, corpus, context size and held-out fraction come from the SAE's ``cfg.json``
    (its metadata as written by ``saehooks train``); ``corpus`` overrides the corpus. At most
    ``eval_tokens`` held-out tokens are used, in whole contexts. Returns the result and the path
    of the metrics file, which goes into the run folder when ``path`` is one. ``progress`` shows
    a progress bar over the batches on stderr. ``backend`` chooses the host library when
    ``host`` is None. ``report`` also writes ``report.md`` and, with matplotlib installed, the
    feature-density and L0 histograms beside the metrics file.
    """
    if eval_tokens < 1:
        raise ValueError(f"eval_tokens={eval_tokens} must be positive")
    sae_dir = find_sae_folder(path)
    sae = load_sae(sae_dir)
    metadata = _read_metadata(sae_dir)
    if host is None:
        # "host_model" is the model as the user named it (for example "smollm2", the embedded
        # GGUF conversion); "model_name" may be a hub name that loads other weights when online.
        model = metadata.get("host_model") or metadata.get("model_name") or "smollm2"
        host = load_host(model, backend=backend)
    hook_name = host.resolve_hook(sae.cfg.hook_name or metadata["hook_name"])
    context_size = int(metadata.get("context_size", 128))
    stream = TokenStream(
        load_corpus(corpus or metadata.get("corpus", "wiki"), metadata.get("text_field", "text")),
        host.tokenizer,
        context_size=context_size,
        bos_token_id=host.bos_token_id,
        eval_fraction=float(metadata.get("eval_fraction", 0.03)),
    )
    n_batches = max(1, eval_tokens // (context_size * batch_size))
    batches = itertools.islice(stream.batches("eval", batch_size), n_batches)
    batches = tqdm(batches, total=n_batches, desc="evaluating", unit="batch", disable=not progress)
    evaluation = run_evaluation(host, sae, batches, hook_name)

    run_dir = sae_dir.parent if sae_dir.name == SAE_SUBFOLDER else sae_dir
    metrics_path = write_metrics(evaluation.result, run_dir / METRICS_FILENAME)
    logger.info("wrote %s", metrics_path)
    if report:
        files = write_report(evaluation, run_dir, f"{sae.cfg.architecture} SAE at {hook_name}")
        logger.info("wrote %s", ", ".join(str(p) for p in [files.report, *files.pictures]))
    return evaluation.result, metrics_path


def _read_metadata(sae_dir: Path) -> dict[str, Any]:
    values = json.loads((sae_dir / "cfg.json").read_text(encoding="utf-8"))
    metadata = dict(values.get("metadata") or {})
    for key in ("model_name", "hook_name"):
        metadata.setdefault(key, values.get(key))
    return metadata
