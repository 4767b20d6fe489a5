"""Activation shards: harvested activations stored on disk as safetensors files, read back mmapped.

A shard folder contains ``manifest.json`` and the files ``shard-00000.safetensors``,
``shard-00001.safetensors``, ... Each shard stores, for the same run of consecutive contexts, one
tensor ``[n_tokens, d]`` per hook (the key is the hook name) and the token ids
``[n_contexts, context_size]`` under ``token_ids``. Rows follow the contexts in order, position
by position, exactly as ``activation_chunks`` flattens them, so reading the shards in order
gives the same activation stream as the live harvest they came from.

The manifest is written last, so a folder without one contains an unfinished harvest. Shards and
manifest are written into the ``.harvest-in-progress`` subfolder and renamed into place only when
the harvest finishes, so an earlier harvest in the folder stays readable until then.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

logger = logging.getLogger(__name__)

MANIFEST_FILENAME = "manifest.json"
SHARD_FORMAT = "saehooks-activation-shards"
SHARD_FORMAT_VERSION = 1
TOKEN_IDS_KEY = "token_ids"
SHARD_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
SAFETENSORS_DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}
STAGING_FOLDER = ".harvest-in-progress"
PREVIOUS_HARVEST_FOLDER = ".previous-harvest"
DISCARDED_HARVEST_FOLDER = ".discarded-harvest"
READ_CHUNK_TOKENS = 8192
"""Rows copied out of the memory map per chunk when shards are read back."""


def shard_filename(index: int) -> str:
    return f"shard-{index:05d}.safetensors"


def check_shard_folder(folder: Path, overwrite: bool) -> None:
    """Check that a harvest may be written to ``folder``, without changing anything in it.

    Raises:
        ValueError: ``folder`` is a file.
        FileExistsError: ``folder`` contains shards, or an earlier harvest moved aside by an
            interrupted overwrite, and ``overwrite`` is False.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder} is a file; pass a folder path for the shards")
    earlier = _harvest_files(folder) or (folder / PREVIOUS_HARVEST_FOLDER).is_dir()
    if earlier and not overwrite:
        raise FileExistsError(
            f"{folder} already contains activation shards; choose another folder or pass "
            "--overwrite to replace them"
        )


def _harvest_files(folder: Path) -> list[Path]:
    """Return the manifest (first, when present) and the shards in ``folder``."""
    files = [folder / MANIFEST_FILENAME, *sorted(folder.glob("shard-*.safetensors"))]
    return [path for path in files if path.exists()]


def _move_files(source: Path, target: Path, files: list[Path] | None = None) -> None:
    """Rename ``files`` (default: everything in ``source``) from ``source`` into ``target``."""
    for path in files if files is not None else list(source.iterdir()):
        os.replace(path, target / path.name)


def _file_mode() -> int:
    """Return 0o666 without the process umask, the mode ``open`` gives a new file."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


class ShardWriter:
    """Collect harvested batches and write them as shards of about ``shard_tokens`` rows each.

    ``add`` takes whole contexts; a shard is written as soon as it contains at least
    ``shard_tokens`` rows per hook, so shards end on context boundaries. ``close`` writes the
    remaining rows and the manifest and moves them into the folder, replacing an earlier
    harvest there. ``abort`` discards what was written and leaves any earlier harvest in place.
    ``data_settings`` is stored verbatim in the manifest under ``data``, next to the fields this
    class fills in itself.
    """

    def __init__(
        self,
        folder: str | Path,
        model_name: str,
        hook_widths: dict[str, int],
        context_size: int,
        drop_bos: bool,
        data_settings: dict[str, Any],
        dtype: str = "float32",
        shard_tokens: int = 65_536,
        overwrite: bool = False,
    ) -> None:
        if dtype not in SHARD_DTYPES:
            raise ValueError(f"dtype={dtype!r} is not supported; use one of {tuple(SHARD_DTYPES)}")
        if shard_tokens < 1:
            raise ValueError(f"shard_tokens={shard_tokens} must be positive")
        if not hook_widths:
            raise ValueError("a shard folder needs at least one hook; pass one or more hook names")
        if TOKEN_IDS_KEY in hook_widths:
            raise ValueError(
                f"hook name {TOKEN_IDS_KEY!r} is invalid: shards store token ids under it"
            )
        self.folder = Path(folder)
        self.model_name = model_name
        self.hook_widths = dict(hook_widths)
        self.context_size = context_size
        self.drop_bos = drop_bos
        self.data_settings = data_settings
        self.dtype = dtype
        self.shard_tokens = shard_tokens
        self.tokens_per_context = context_size - 1 if drop_bos else context_size
        self.shards: list[dict[str, Any]] = []
        self.num_tokens = 0
        """Rows per hook written or pending so far."""
        self._pending_tokens: list[torch.Tensor] = []  # [B, T] each
        self._pending_acts: dict[str, list[torch.Tensor]] = {hook: [] for hook in hook_widths}
        self._pending_rows = 0
        self._prepare_folder(overwrite)

    def _prepare_folder(self, overwrite: bool) -> None:
        previous = self.folder / PREVIOUS_HARVEST_FOLDER
        if previous.is_dir():
            logger.warning(
                "restoring the harvest that an interrupted overwrite left in %s", self.folder
            )
            _move_files(previous, self.folder)
            previous.rmdir()
        shutil.rmtree(self.folder / DISCARDED_HARVEST_FOLDER, ignore_errors=True)
        check_shard_folder(self.folder, overwrite)
        self._created = not self.folder.exists()
        self.folder.mkdir(parents=True, exist_ok=True)
        # New shards wait here until close, so the folder keeps any earlier harvest until then.
        self._staging = self.folder / STAGING_FOLDER
        shutil.rmtree(self._staging, ignore_errors=True)
        self._staging.mkdir()

    def add(self, token_ids: torch.Tensor, acts: dict[str, torch.Tensor]) -> None:
        """Queue contexts ``[B, T]`` with their activations ``[B * tokens_per_context, d]``."""
        if token_ids.ndim != 2 or token_ids.shape[1] != self.context_size:
            raise ValueError(
                f"token ids must have shape [B, {self.context_size}], got {tuple(token_ids.shape)}"
            )
        rows = token_ids.shape[0] * self.tokens_per_context
        for hook, width in self.hook_widths.items():
            if hook not in acts:
                raise KeyError(f"no activations given for hook {hook!r}; got {sorted(acts)}")
            if tuple(acts[hook].shape) != (rows, width):
                raise ValueError(
                    f"activations at {hook!r} have shape {tuple(acts[hook].shape)}, expected "
                    f"({rows}, {width}) for {token_ids.shape[0]} contexts"
                )
            self._pending_acts[hook].append(acts[hook].to(SHARD_DTYPES[self.dtype]))
        self._pending_tokens.append(token_ids.to(torch.int64))
        self._pending_rows += rows
        self.num_tokens += rows
        if self._pending_rows >= self.shard_tokens:
            self._write_shard()

    def close(self) -> Path:
        """Write the last shard and the manifest, move both into the folder, return the manifest."""
        if self._pending_rows > 0:
            self._write_shard()
        manifest = {
            "format": SHARD_FORMAT,
            "version": SHARD_FORMAT_VERSION,
            "model_name": self.model_name,
            "hooks": self.hook_widths,
            "dtype": self.dtype,
            "num_tokens": self.num_tokens,
            "num_contexts": sum(shard["num_contexts"] for shard in self.shards),
            "context_size": self.context_size,
            "drop_bos": self.drop_bos,
            "data": self.data_settings,
            "shards": self.shards,
        }
        temporary = self._staging / MANIFEST_FILENAME
        temporary.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        temporary.chmod(_file_mode())
        self._move_into_place()
        logger.info(
            "wrote %d activations per hook in %d shards to %s",
            self.num_tokens,
            len(self.shards),
            self.folder,
        )
        return self.folder / MANIFEST_FILENAME

    def abort(self) -> None:
        """Delete the shards written so far and leave the folder as it was before the harvest."""
        shutil.rmtree(self._staging, ignore_errors=True)
        if self._created and self.folder.is_dir() and not any(self.folder.iterdir()):
            self.folder.rmdir()

    def _move_into_place(self) -> None:
        """Replace an earlier harvest in the folder with the staged one, manifest last.

        The earlier harvest's files wait in ``.previous-harvest`` until the new manifest is in
        place. An error or Ctrl-C before that moves them back, and a process killed outright
        leaves them for the next ``ShardWriter`` on the folder to restore.
        """
        previous = self.folder / PREVIOUS_HARVEST_FOLDER
        previous.mkdir()
        # The manifest goes first, so the folder never looks complete with shards missing.
        _move_files(self.folder, previous, _harvest_files(self.folder))
        try:
            manifest = self._staging / MANIFEST_FILENAME
            _move_files(
                self._staging, self.folder, [p for p in self._staging.iterdir() if p != manifest]
            )
            os.replace(manifest, self.folder / MANIFEST_FILENAME)
        except BaseException:
            _move_files(self.folder, self._staging, _harvest_files(self.folder))
            _move_files(previous, self.folder)
            previous.rmdir()
            raise
        # Renamed first, so a kill during the deletion leaves nothing that looks restorable.
        discarded = self.folder / DISCARDED_HARVEST_FOLDER
        os.replace(previous, discarded)
        shutil.rmtree(discarded)
        self._staging.rmdir()

    def _write_shard(self) -> None:
        tensors = {hook: torch.cat(parts) for hook, parts in self._pending_acts.items()}
        tensors[TOKEN_IDS_KEY] = torch.cat(self._pending_tokens)
        name = shard_filename(len(self.shards))
        temporary = self._staging / f".{name}.tmp"
        save_file(tensors, str(temporary))
        temporary.chmod(_file_mode())
        os.replace(temporary, self._staging / name)
        self.shards.append(
            {
                "file": name,
                "num_tokens": self._pending_rows,
                "num_contexts": int(tensors[TOKEN_IDS_KEY].shape[0]),
            }
        )
        self._pending_tokens = []
        self._pending_acts = {hook: [] for hook in self.hook_widths}
        self._pending_rows = 0


class ActivationShards:
    """A finished shard folder, checked on opening and read back through memory maps.

    Opening reads the manifest and opens every shard listed in it, so a missing, truncated or
    mismatched shard raises before any training starts. The activations themselves stay on disk:
    ``chunks`` copies ``READ_CHUNK_TOKENS`` rows at a time out of the memory map.

    Raises:
        FileNotFoundError: the manifest or a shard it lists is missing.
        ValueError: the manifest is invalid, or a shard is truncated, corrupt or contains tensors
            of other shapes or dtypes than the manifest states.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.manifest = _read_manifest(self.folder)
        self.model_name: str = self.manifest["model_name"]
        """The host's model name, as saved SAE configs record it."""
        self.hook_widths: dict[str, int] = dict(self.manifest["hooks"])
        """Width ``d`` of the activations at each stored hook."""
        self.dtype: str = self.manifest["dtype"]
        self.num_tokens: int = self.manifest["num_tokens"]
        """Activation rows per hook over all shards."""
        self.context_size: int = self.manifest["context_size"]
        self.drop_bos: bool = self.manifest["drop_bos"]
        self.data_settings: dict[str, Any] = dict(self.manifest["data"])
        """The data settings of the harvest, as given to ``ShardWriter``."""
        for shard in self.manifest["shards"]:
            self._check_shard(shard)

    def width(self, hook_name: str) -> int:
        """Return ``d`` at ``hook_name``, raising ValueError that lists the stored hooks."""
        if hook_name not in self.hook_widths:
            raise ValueError(
                f"the shards in {self.folder} hold no activations at {hook_name!r}, only at "
                f"{sorted(self.hook_widths)}; train on one of those hooks or harvest "
                f"{hook_name!r} into another folder"
            )
        return self.hook_widths[hook_name]

    def chunks(
        self, hook_name: str, chunk_tokens: int = READ_CHUNK_TOKENS
    ) -> Iterator[torch.Tensor]:
        """Yield the activations at ``hook_name`` in harvest order, as chunks ``[n, d]``.

        Each chunk is a copy of at most ``chunk_tokens`` rows in the stored dtype, so memory use
        does not grow with the size of the shard folder.
        """
        self.width(hook_name)
        for shard in self.manifest["shards"]:
            with safe_open(str(self.folder / shard["file"]), framework="pt") as handle:
                stored = handle.get_slice(hook_name)
                for start in range(0, shard["num_tokens"], chunk_tokens):
                    yield stored[start : start + chunk_tokens]  # [n, d]

    def token_ids(self) -> Iterator[torch.Tensor]:
        """Yield the token ids ``[n_contexts, context_size]`` of each shard in order."""
        for shard in self.manifest["shards"]:
            with safe_open(str(self.folder / shard["file"]), framework="pt") as handle:
                yield handle.get_tensor(TOKEN_IDS_KEY)

    def _check_shard(self, shard: dict[str, Any]) -> None:
        path = self.folder / shard["file"]
        refill = f"harvest again into {self.folder} with --overwrite"
        if not path.is_file():
            raise FileNotFoundError(f"shard {path} listed in the manifest is missing; {refill}")
        try:
            with safe_open(str(path), framework="pt") as handle:
                shapes = {key: handle.get_slice(key).get_shape() for key in handle.keys()}
                dtypes = {key: handle.get_slice(key).get_dtype() for key in handle.keys()}
        except SafetensorError as error:
            raise ValueError(f"shard {path} is truncated or corrupt ({error}); {refill}") from error

        expected = {hook: [shard["num_tokens"], width] for hook, width in self.hook_widths.items()}
        expected[TOKEN_IDS_KEY] = [shard["num_contexts"], self.context_size]
        if shapes != expected:
            raise ValueError(
                f"shard {path} contains tensors of shapes {shapes}, but the manifest expects "
                f"{expected}; {refill}"
            )
        wrong_dtypes = {
            hook: dtypes[hook]
            for hook in self.hook_widths
            if dtypes[hook] != SAFETENSORS_DTYPES[self.dtype]
        }
        if wrong_dtypes:
            raise ValueError(
                f"shard {path} contains dtypes {wrong_dtypes}, but the manifest names "
                f"{self.dtype}; {refill}"
            )


MANIFEST_KEYS = (
    "format",
    "version",
    "model_name",
    "hooks",
    "dtype",
    "num_tokens",
    "num_contexts",
    "context_size",
    "drop_bos",
    "data",
    "shards",
)


def _read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST_FILENAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found; write activation shards there first with "
            f"'saehooks harvest --out {folder}'. A folder without a manifest contains an "
            "unfinished harvest"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); harvest again") from error
    missing = [key for key in MANIFEST_KEYS if key not in manifest]
    if missing or manifest["format"] != SHARD_FORMAT:
        raise ValueError(
            f"{path} is not a valid saehooks shard manifest (missing keys {missing}, format "
            f"{manifest.get('format')!r}); harvest again with 'saehooks harvest'"
        )
    if manifest["version"] != SHARD_FORMAT_VERSION:
        raise ValueError(
            f"{path} has shard format version {manifest['version']}, but this saehooks reads "
            f"version {SHARD_FORMAT_VERSION}; harvest again with this version"
        )
    if manifest["dtype"] not in SHARD_DTYPES:
        raise ValueError(
            f"{path} names dtype {manifest['dtype']!r}; shards use one of {tuple(SHARD_DTYPES)}"
        )
    counted = sum(shard["num_tokens"] for shard in manifest["shards"])
    if counted != manifest["num_tokens"]:
        raise ValueError(
            f"{path} states num_tokens={manifest['num_tokens']}, but its shards add up to "
            f"{counted}; harvest again"
        )
    return manifest
