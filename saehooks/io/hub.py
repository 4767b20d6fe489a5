"""Fetch SAE folders from the Hugging Face Hub, or from its local cache when offline.

``huggingface_hub`` downloads into its cache (``models--ORG--NAME/snapshots/REVISION/...``, with
``refs/main`` naming the revision) and returns paths inside it. Offline, set by
``HF_HUB_OFFLINE=1`` or by ``offline=True``, the same call reads the cache only. It raises when a
file was never downloaded, with an error that names the file, the repository and the cache folder.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from huggingface_hub import hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

logger = logging.getLogger(__name__)

TRUE_VALUES = ("1", "on", "yes", "true")


def hub_offline() -> bool:
    """Read ``HF_HUB_OFFLINE`` at call time, so that setting it later still takes effect."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in TRUE_VALUES


def fetch_hub_folder(
    repo_id: str,
    folder: str,
    filenames: tuple[str, ...],
    revision: str | None = None,
    offline: bool | None = None,
    cache_dir: str | Path | None = None,
) -> Path:
    """Download ``filenames`` from ``folder`` of hub repository ``repo_id`` into the cache.

    Returns the local folder that contains them.

    Args:
        repo_id: a hub model repository, ``org/name``.
        folder: the folder inside the repository that contains the SAE, '' for its root.
        filenames: the files the SAE folder needs, for example ``("cfg.json", "sae.safetensors")``.
        revision: a branch, tag or commit; ``None`` is ``main``.
        offline: read only the local cache; ``None`` follows ``HF_HUB_OFFLINE``.
        cache_dir: the hub cache; ``None`` follows ``HF_HUB_CACHE`` (read when called), else the
            ``huggingface_hub`` default.

    Raises:
        FileNotFoundError: a file is neither downloadable nor in the cache.
    """
    offline = hub_offline() if offline is None else offline
    cache_dir = cache_dir if cache_dir is not None else os.environ.get("HF_HUB_CACHE")
    paths = []
    for filename in filenames:
        remote = f"{folder.strip('/')}/{filename}" if folder.strip("/") else filename
        paths.append(_fetch(repo_id, remote, revision, offline, cache_dir))
    parents = {path.parent for path in paths}
    if len(parents) != 1:
        raise FileNotFoundError(
            f"files of {repo_id}/{folder} landed in different folders {sorted(parents)}; "
            "clear that repository from the hub cache and download it again"
        )
    return parents.pop()


def _fetch(
    repo_id: str, remote: str, revision: str | None, offline: bool, cache_dir: str | Path | None
) -> Path:
    where = f"{remote} of hub repository {repo_id}" + (f" at {revision}" if revision else "")
    try:
        path = hf_hub_download(
            repo_id,
            remote,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=offline,
        )
    except LocalEntryNotFoundError as error:
        cache = cache_dir or "the default hub cache"
        reason = "offline mode is on" if offline else "the hub could not be reached"
        raise FileNotFoundError(
            f"{where} is not in the local hub cache ({cache}) and {reason}; connect once to "
            f"download it, or copy it into the cache"
        ) from error
    except (EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError) as error:
        raise FileNotFoundError(f"{where} does not exist on the hub: {error}") from error
    logger.debug("fetched %s to %s", where, path)
    return Path(path)
