"""The main job: corpus -> tokens -> host harvest -> shuffling buffer -> trainer -> saved SAE."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from saehooks.data import ActivationBuffer, TokenStream, activation_chunks, load_corpus
from saehooks.hosts import Backend, Host, load_host
from saehooks.io import save_sae
from saehooks.resampling import RemedyConfig, build_remedies
from saehooks.sae import SAEConfig
from saehooks.sae.config import DTYPES
from saehooks.training.config import DataConfig, TrainingConfig
from saehooks.training.trainer import Trainer, TrainResult, new_sae

logger = logging.getLogger(__name__)

SAE_SUBFOLDER = "sae"
TRAIN_METRICS_FILENAME = "train_metrics.jsonl"
RUN_FILENAME = "run.json"


@dataclasses.dataclass
class TrainOutcome:
    """Where a training run left its files, and what the loop did."""

    run_dir: Path
    """Folder with ``sae/``, ``train_metrics.jsonl`` and ``run.json``."""
    sae_dir: Path
    """The saved SAE folder, readable by ``saehooks.io.load_sae``."""
    result: TrainResult
    """Steps, tokens, interruption flag and final metrics of the loop."""


def token_stream(data_cfg: DataConfig, host: Host) -> TokenStream:
    """The packed-context stream that ``data_cfg`` describes, tokenised by ``host``."""
    check_context_size(data_cfg.context_size, host)
    return TokenStream(
        load_corpus(data_cfg.corpus, data_cfg.text_field),
        host.tokenizer,
        context_size=data_cfg.context_size,
        bos_token_id=host.bos_token_id,
        seed=data_cfg.shuffle_seed,
        eval_fraction=data_cfg.eval_fraction,
    )


def load_training_host(data_cfg: DataConfig, backend: Backend = "transformer_lens") -> Host:
    """Load the host ``data_cfg`` names, in ``data_cfg.host_dtype``, harvesting float32.

    Warns when a bfloat16 host would run on a CPU without bfloat16 instructions, where it is
    several times slower than float32.
    """
    dtype = DTYPES[data_cfg.host_dtype]
    if dtype == torch.bfloat16 and cpu_supports_bfloat16() is False:
        logger.warning(
            "host_dtype='bfloat16' on a CPU without bfloat16 instructions: on such a CPU (AVX2 "
            "only) a bfloat16 SmolLM2 harvest ran 7 to 8 times slower than float32. Use "
            "host_dtype='float32' (--host-dtype float32) unless memory is the constraint"
        )
    host = load_host(data_cfg.model, dtype, backend, activation_dtype=torch.float32)
    check_context_size(data_cfg.context_size, host)
    return host


def cpu_supports_bfloat16() -> bool | None:
    """Return whether oneDNN, PyTorch's CPU kernel library, reports bfloat16 support.

    None when this PyTorch build cannot tell. The check is a private PyTorch operator, present
    in 2.13.
    """
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return None


def max_context_size(host: Host) -> int | None:
    """Return the host model's maximum context in tokens, or None when its config has none.

    TransformerLens configs store it as ``n_ctx``, Hugging Face configs as
    ``max_position_embeddings``.
    """
    bridge_cfg = getattr(getattr(host, "bridge", None), "cfg", None)
    limit = getattr(bridge_cfg, "n_ctx", None)
    if limit is None:
        model_config = getattr(getattr(host, "model", None), "config", None)
        limit = getattr(model_config, "max_position_embeddings", None)
    return int(limit) if limit else None


def check_context_size(context_size: int, host: Host) -> None:
    """Raise ValueError when ``context_size`` exceeds the host model's maximum context."""
    limit = max_context_size(host)
    if limit is not None and context_size > limit:
        raise ValueError(
            f"context_size={context_size} exceeds the maximum context of {host.model_name}, "
            f"{limit} tokens; set context_size to at most {limit}"
        )


def repeated_train_batches(stream: TokenStream, batch_size: int) -> Iterator[torch.Tensor]:
    """Training token batches ``[B, T]``, starting a new pass over the split when one ends."""
    epoch = 0
    while True:
        served = 0
        for batch in stream.batches("train", batch_size):
            served += 1
            yield batch
        if served == 0:
            raise ValueError(
                "the training split holds no full context; use a larger corpus or a smaller "
                "context_size"
            )
        epoch += 1
        logger.warning("training split exhausted; starting pass %d over the same tokens", epoch + 1)


def activation_width(host: Host, hook_name: str) -> int:
    """Width ``d`` of the activations at ``hook_name``, read from a two-token forward pass."""
    probe = torch.tensor([[host.bos_token_id, host.bos_token_id]])
    return int(host.harvest(probe, [hook_name])[hook_name].shape[-1])


def train_sae(
    sae_cfg: SAEConfig,
    data_cfg: DataConfig,
    train_cfg: TrainingConfig,
    out_dir: str | Path,
    host: Host | None = None,
    progress: bool = True,
    remedy_cfg: RemedyConfig | None = None,
    overwrite: bool = False,
    activations: str | Path | None = None,
) -> TrainOutcome:
    """Train one SAE on live activations of ``data_cfg.hook_name`` and save it under ``out_dir``.

    ``sae_cfg.d_in`` must equal the width of the activations at the hook. When ``host`` is None,
    the host named by ``data_cfg.model`` is loaded in ``data_cfg.host_dtype``. ``remedy_cfg``
    picks a dead-latent remedy (none by default). Ctrl-C stops training cleanly and the SAE
    trained so far is saved. A folder that already contains a run is replaced only with
    ``overwrite``, and the old run is kept until the new SAE is saved: an error or Ctrl-C before
    that restores it.

    With ``activations``, a shard folder written by ``harvest_shards``, the SAE trains on the
    stored activations at ``data_cfg.hook_name`` instead, and no host is loaded. The other data
    settings then come from the shard manifest, except ``buffer_tokens``.
    """
    if activations is not None:
        from saehooks.training.multi import SAEJob, train_saes  # multi imports this module

        job = SAEJob(
            dataclasses.replace(sae_cfg, hook_name=data_cfg.hook_name),
            train_cfg,
            out_dir,
            remedy_cfg if remedy_cfg is not None else RemedyConfig(),
        )
        outcomes = train_saes(
            [job], data_cfg, activations=activations, progress=progress, overwrite=overwrite
        )
        return outcomes[0]

    run_dir = Path(out_dir)
    with run_folders([run_dir], overwrite) as (folder,):
        host = host if host is not None else load_training_host(data_cfg)
        hook_name = host.resolve_hook(data_cfg.hook_name)
        width = activation_width(host, hook_name)
        if sae_cfg.d_in != width:
            raise ValueError(
                f"sae d_in={sae_cfg.d_in} does not match the width {width} of the activations at "
                f"{hook_name!r}; set d_in={width}"
            )
        sae_cfg = dataclasses.replace(sae_cfg, hook_name=hook_name, model_name=host.model_name)

        stream = token_stream(data_cfg, host)
        chunks = activation_chunks(
            repeated_train_batches(stream, data_cfg.harvest_batch_size),
            lambda tokens: host.harvest(tokens, [hook_name]),
            hook_name,
            drop_bos=data_cfg.drop_bos,
        )
        # A budget smaller than the buffer would otherwise harvest activations it never trains on.
        capacity = min(data_cfg.buffer_tokens, train_cfg.total_tokens)
        buffer = ActivationBuffer(
            chunks,
            capacity=max(capacity, train_cfg.batch_size),
            batch_size=train_cfg.batch_size,
            d=width,
            seed=train_cfg.seed,
            max_rows=rows_to_train(train_cfg),
        )

        metrics_path = run_dir / TRAIN_METRICS_FILENAME
        remedy_cfg = remedy_cfg if remedy_cfg is not None else RemedyConfig()
        trainer = Trainer(
            new_sae(sae_cfg, train_cfg.seed),
            train_cfg,
            metrics_path,
            progress,
            remedies=build_remedies(remedy_cfg),
        )
        trainer.initialize(buffer.unserved())
        result = trainer.fit(buffer)
        outcome = save_run(run_dir, trainer, data_cfg, remedy_cfg, result)
        folder.commit()
    return outcome


def rows_to_train(train_cfg: TrainingConfig) -> int:
    """Activations that ``Trainer.fit`` consumes: whole batches until the budget is reached."""
    return -(-train_cfg.total_tokens // train_cfg.batch_size) * train_cfg.batch_size


def save_run(
    run_dir: Path,
    trainer: Trainer,
    data_cfg: DataConfig,
    remedy_cfg: RemedyConfig,
    result: TrainResult,
    activations: Path | None = None,
) -> TrainOutcome:
    """Save the trained SAE under ``run_dir/sae`` and every config in ``run.json``.

    ``activations`` is the shard folder the SAE trained on, or None for live activations.
    """
    extra = {
        "training_tokens": result.tokens,
        "context_size": data_cfg.context_size,
        "corpus": data_cfg.corpus,
        "text_field": data_cfg.text_field,
        "host_model": data_cfg.model,
        "eval_fraction": data_cfg.eval_fraction,
        "shuffle_seed": data_cfg.shuffle_seed,
        "prepend_bos": True,
        "input_scale_folded": trainer.scale,
    }
    sae_dir = save_sae(trainer.export(), run_dir / SAE_SUBFOLDER, extra=extra)
    run = {
        "sae": trainer.sae.cfg.to_dict(),
        "data": dataclasses.asdict(data_cfg),
        "training": trainer.cfg.to_dict(),
        "remedy": remedy_cfg.to_dict(),
        "result": dataclasses.asdict(result),
    }
    if activations is not None:
        run["activations"] = str(activations)
    write_json(run_dir / RUN_FILENAME, run)
    return TrainOutcome(run_dir=run_dir, sae_dir=sae_dir, result=result)


# Files a run folder gets from training and evaluation, besides the sae folder. An overwrite
# replaces all of them.
PREVIOUS_RUN_FOLDER = ".previous-run"
DISCARDED_RUN_FOLDER = ".discarded-run"
RUN_OUTPUT_PATTERNS = (RUN_FILENAME, TRAIN_METRICS_FILENAME, "metrics.json", "*.png", "report.md")


def check_run_folder(run_dir: Path, overwrite: bool) -> bool:
    """Check that a run may be written to ``run_dir``, and return whether it contains one already.

    Raises:
        ValueError: ``run_dir`` is a file.
        FileExistsError: ``run_dir`` contains a run and ``overwrite`` is False.
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"the run folder {run_dir} is a file; pass a folder path as --out")
    holds_run = (run_dir / RUN_FILENAME).exists() or (run_dir / SAE_SUBFOLDER).exists()
    if holds_run and not overwrite:
        raise FileExistsError(
            f"{run_dir} already holds a training run; choose another --out or pass --overwrite "
            "to replace it"
        )
    return holds_run


class RunFolder:
    """A run folder being written, which keeps an earlier run in it until the new one is saved.

    Opening moves the earlier run's files into ``.previous-run`` inside the folder. ``commit``
    deletes them once the new run is saved. ``restore`` deletes the new run's files and moves the
    earlier ones back, so an error or Ctrl-C before the save leaves the old run as it was. A
    ``.previous-run`` left by a process killed outright is moved back on the next opening.
    """

    def __init__(self, run_dir: Path, overwrite: bool) -> None:
        self.run_dir = run_dir
        self.previous = run_dir / PREVIOUS_RUN_FOLDER
        self.committed = False
        self.created = not run_dir.exists()
        if self.previous.is_dir():
            logger.warning("restoring the run that an interrupted overwrite left in %s", run_dir)
            self.restore()
        shutil.rmtree(run_dir / DISCARDED_RUN_FOLDER, ignore_errors=True)
        holds_run = check_run_folder(run_dir, overwrite)
        run_dir.mkdir(parents=True, exist_ok=True)
        if holds_run:
            self.previous.mkdir()
            for path in run_outputs(run_dir):
                os.replace(path, self.previous / path.name)
            logger.info("replacing the earlier run in %s once the new one is saved", run_dir)

    def commit(self) -> None:
        """Delete the earlier run, because the new one is saved."""
        self.committed = True
        if self.previous.is_dir():
            # Renamed first, so a kill during the deletion leaves nothing that looks restorable.
            discarded = self.run_dir / DISCARDED_RUN_FOLDER
            os.replace(self.previous, discarded)
            shutil.rmtree(discarded)

    def restore(self) -> None:
        """Delete the new run's files and move the earlier run's files back."""
        for path in run_outputs(self.run_dir):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        if self.previous.is_dir():
            for path in self.previous.iterdir():
                os.replace(path, self.run_dir / path.name)
            self.previous.rmdir()
        if self.created and self.run_dir.is_dir() and not any(self.run_dir.iterdir()):
            self.run_dir.rmdir()


def run_outputs(run_dir: Path) -> list[Path]:
    """Return the training and evaluation outputs in ``run_dir``, the ``sae`` folder included."""
    paths = [path for pattern in RUN_OUTPUT_PATTERNS for path in run_dir.glob(pattern)]
    sae_dir = run_dir / SAE_SUBFOLDER
    return paths + [sae_dir] if sae_dir.exists() else paths


@contextlib.contextmanager
def run_folders(run_dirs: Sequence[Path], overwrite: bool) -> Iterator[list[RunFolder]]:
    """Open a ``RunFolder`` for each of ``run_dirs`` and restore every uncommitted one on error.

    Ctrl-C counts as an error here: whatever was not saved and committed by then is removed.
    """
    folders: list[RunFolder] = []
    try:
        for run_dir in run_dirs:
            folders.append(RunFolder(run_dir, overwrite))
        yield folders
    except BaseException:
        for folder in folders:
            if not folder.committed:
                folder.restore()
        raise


def write_json(path: Path, values: dict[str, Any]) -> None:
    """Write ``values`` as indented JSON through a temporary file and an atomic rename."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(values, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)
