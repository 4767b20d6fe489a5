"""Harvest the training split's activations at one or more hooks into a shard folder."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from saehooks.data import ActivationShards, ShardWriter
from saehooks.hosts import Host
from saehooks.training.config import DataConfig
from saehooks.training.pipeline import activation_width, load_training_host, token_stream

logger = logging.getLogger(__name__)

DEFAULT_SHARD_TOKENS = 65_536


def harvest_shards(
    data_cfg: DataConfig,
    hook_names: Sequence[str],
    out_dir: str | Path,
    total_tokens: int,
    host: Host | None = None,
    dtype: str = "float32",
    shard_tokens: int = DEFAULT_SHARD_TOKENS,
    overwrite: bool = False,
    progress: bool = True,
) -> ActivationShards:
    """Write the activations of ``hook_names`` for the first ``total_tokens`` training tokens.

    The contexts, batches and BOS handling are those of live training with ``data_cfg``: the
    same token stream is harvested in batches of ``data_cfg.harvest_batch_size`` contexts, and
    with ``data_cfg.drop_bos`` position 0 is left out. The last batch is harvested whole and
    trimmed to the contexts needed, so every stored activation equals the live one bit for bit.
    The harvest makes at most one pass over the training split and stores fewer tokens, with a
    warning, when the split ends first. An error or Ctrl-C (KeyboardInterrupt, re-raised)
    deletes the shards written so far and writes no manifest, so an earlier harvest in
    ``out_dir`` stays as it was. When ``host`` is None, the host that ``data_cfg.model`` names
    is loaded in ``data_cfg.host_dtype``, as for live training.

    Returns:
        The finished shard folder, opened.
    """
    if total_tokens < 1:
        raise ValueError(f"total_tokens={total_tokens} must be positive")
    host = host if host is not None else load_training_host(data_cfg)
    hooks = list(dict.fromkeys(host.resolve_hook(name) for name in hook_names))
    writer = ShardWriter(
        out_dir,
        model_name=host.model_name,
        hook_widths={hook: activation_width(host, hook) for hook in hooks},
        context_size=data_cfg.context_size,
        drop_bos=data_cfg.drop_bos,
        data_settings=dataclasses.asdict(data_cfg),
        dtype=dtype,
        shard_tokens=shard_tokens,
        overwrite=overwrite,
    )
    first_row = 1 if data_cfg.drop_bos else 0
    needed_contexts = -(-total_tokens // writer.tokens_per_context)  # ceiling division
    total = needed_contexts * writer.tokens_per_context
    bar = tqdm(total=total, unit="tok", unit_scale=True, disable=not progress)
    contexts = 0
    try:
        for tokens in token_stream(data_cfg, host).batches("train", data_cfg.harvest_batch_size):
            harvested = host.harvest(tokens, hooks)  # hook -> [B, T, d]
            keep = min(tokens.shape[0], needed_contexts - contexts)
            acts = {
                hook: harvested[hook][:keep, first_row:].reshape(-1, writer.hook_widths[hook])
                for hook in hooks
            }  # hook -> [keep * tokens_per_context, d]
            writer.add(tokens[:keep], acts)
            contexts += keep
            bar.update(keep * writer.tokens_per_context)
            if contexts >= needed_contexts:
                break
        if writer.num_tokens == 0:
            raise ValueError(
                "the harvest stored no activations: the training split contains no full context "
                f"of {data_cfg.context_size} tokens; use a larger corpus or a smaller context_size"
            )
        if writer.num_tokens < total_tokens:
            logger.warning(
                "the harvest stored %d activations per hook, fewer than the %d requested",
                writer.num_tokens,
                total_tokens,
            )
        writer.close()
    except BaseException:
        writer.abort()
        raise
    finally:
        bar.close()
    return ActivationShards(out_dir)
