"""A preallocated, half-refilled shuffle buffer of activations, and the harvest that feeds it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator

import torch

logger = logging.getLogger(__name__)

HarvestFn = Callable[[torch.Tensor], dict[str, torch.Tensor]]
"""Map token ids ``[B, T]`` to activations ``[B, T, d]`` keyed by hook name."""


class ActivationBuffer:
    """Serve shuffled batches ``[batch_size, d]`` from one preallocated tensor ``[capacity, d]``.

    Exact semantics:

    1. The first ``next()`` fills all ``capacity`` rows from ``source``.
    2. The rows not yet served form a pool in random order, and each batch is the next
       ``batch_size`` rows of that pool, gathered into a new tensor.
    3. Before a batch, if at least ``capacity // 2`` rows have been served since the last fill, or
       fewer than ``batch_size`` rows remain unserved, the served rows (and only those) are
       overwritten in place with new activations from ``source``. The pool then becomes the
       unserved old rows plus the new ones, shuffled again.
    4. Source chunks may have any number of rows. Rows beyond what a fill needs are kept and used
       first by the next fill.
    5. When ``source`` runs dry, the buffer serves the rows it still contains, ending with one
       smaller batch when they do not divide evenly, and then raises ``StopIteration``.

    6. With ``max_rows``, the buffer reads at most that many rows from ``source`` and then
       treats it as dry, so a training run harvests no activations it will not train on.

    A row is overwritten only after it has been served, so every activation read from the source
    is served exactly once: nothing repeats and nothing is dropped.
    """

    def __init__(
        self,
        source: Iterable[torch.Tensor],
        capacity: int,
        batch_size: int,
        d: int,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        max_rows: int | None = None,
    ) -> None:
        if d < 1:
            raise ValueError(f"d must be at least 1, got {d}")
        if capacity < 2:
            raise ValueError(f"capacity must be at least 2, got {capacity}")
        if not 1 <= batch_size <= capacity:
            raise ValueError(f"batch_size must be in [1, capacity={capacity}], got {batch_size}")
        if max_rows is not None and max_rows < 1:
            raise ValueError(f"max_rows must be at least 1 or None, got {max_rows}")
        self.capacity = capacity
        self.batch_size = batch_size
        self.d = d
        self._source = iter(source)
        self._source_dry = False
        self._rows_left = max_rows  # rows the source may still give; None for no limit
        self._leftover: torch.Tensor | None = None  # [n, d] rows read but not yet stored
        self._generator = torch.Generator().manual_seed(seed)
        self._data = torch.empty(capacity, d, dtype=dtype, device=device)  # [capacity, d]
        self._pool = torch.empty(0, dtype=torch.long)  # row indices not yet served, shuffled
        self._position = 0  # how many entries of _pool have been served
        self._started = False
        self.num_served = 0
        """Activations served so far."""

    def __iter__(self) -> ActivationBuffer:
        return self

    def __next__(self) -> torch.Tensor:
        if not self._started:
            self._fill_first()
        elif self._needs_refill():
            self._refill(self._pool[: self._position])

        rows = self._pool[self._position : self._position + self.batch_size]
        if rows.numel() == 0:
            raise StopIteration
        self._position += rows.numel()
        self.num_served += rows.numel()
        return self._data.index_select(0, rows.to(self._data.device))  # [<= batch_size, d], a copy

    def unserved(self) -> torch.Tensor:
        """Return a copy ``[n, d]`` of the activations stored but not yet served.

        Before the first batch this fills the buffer and returns the whole first fill, for
        example to initialise an SAE's ``b_dec`` from it.
        """
        if not self._started:
            self._fill_first()
        rows = self._pool[self._position :]
        return self._data.index_select(0, rows.to(self._data.device))  # [n_unserved, d]

    def _fill_first(self) -> None:
        self._refill(torch.arange(self.capacity))
        self._started = True

    def _needs_refill(self) -> bool:
        if self._source_dry:
            return False
        unserved = self._pool.numel() - self._position
        return self._position >= self.capacity // 2 or unserved < self.batch_size

    def _refill(self, free_rows: torch.Tensor) -> None:
        """Store new activations into ``free_rows`` and reshuffle the pool of unserved rows."""
        filled = 0
        while filled < free_rows.numel():
            chunk = self._next_chunk()
            if chunk is None:
                break
            take = min(chunk.shape[0], free_rows.numel() - filled)
            target = free_rows[filled : filled + take].to(self._data.device)
            self._data.index_copy_(0, target, chunk[:take].to(self._data))  # rows [take, d]
            if take < chunk.shape[0]:
                self._leftover = chunk[take:]
            filled += take

        unserved = torch.cat([self._pool[self._position :], free_rows[:filled]])
        self._pool = unserved[torch.randperm(unserved.numel(), generator=self._generator)]
        self._position = 0
        logger.debug("buffer refill: %d rows stored, %d unserved", filled, self._pool.numel())

    def _next_chunk(self) -> torch.Tensor | None:
        """Return the next source rows ``[n, d]``, leftovers first, or None when none are left."""
        if self._leftover is not None:
            chunk, self._leftover = self._leftover, None
            return chunk
        if self._source_dry:
            return None
        if self._rows_left is not None and self._rows_left <= 0:
            self._release_source()
            logger.debug("read max_rows from the source after %d served", self.num_served)
            return None
        for chunk in self._source:
            if chunk.ndim != 2 or chunk.shape[1] != self.d:
                raise ValueError(
                    f"activation chunks must have shape [n, d={self.d}], got {tuple(chunk.shape)}"
                )
            if chunk.shape[0] > 0:
                if self._rows_left is not None:
                    chunk = chunk[: self._rows_left]
                    self._rows_left -= chunk.shape[0]
                return chunk
        self._release_source()
        logger.debug("activation source is dry after %d served", self.num_served)
        return None


    def _release_source(self) -> None:
        """Mark the source dry and drop it.

        Dropping it matters when it is one copy of an ``itertools.tee``: a copy that stays
        referenced but unread makes the tee keep every later item for it.
        """
        self._source_dry = True
        self._source = iter(())


def activation_chunks(
    token_batches: Iterable[torch.Tensor],
    harvest_fn: HarvestFn,
    hook_name: str,
    drop_bos: bool = True,
) -> Iterator[torch.Tensor]:
    """Yield one activation chunk ``[n, d]`` per token batch ``[B, T]``.

    ``harvest_fn(tokens)`` returns activations ``[B, T, d]`` keyed by hook name. With
    ``drop_bos`` the activations at position 0, where every ``TokenStream`` context has its BOS
    token, are left out, so each chunk has ``n = B * (T - 1)`` rows, otherwise ``B * T``.
    """
    for tokens in token_batches:
        harvested = harvest_fn(tokens)
        if hook_name not in harvested:
            raise KeyError(
                f"the harvest returned no activations for hook {hook_name!r}, only for "
                f"{sorted(harvested)}"
            )
        acts = harvested[hook_name]  # [B, T, d]
        if acts.ndim != 3 or acts.shape[:2] != tokens.shape:
            raise ValueError(
                f"activations at {hook_name!r} have shape {tuple(acts.shape)}, expected "
                f"[B, T, d] matching the tokens' {tuple(tokens.shape)}"
            )
        if drop_bos:
            acts = acts[:, 1:]  # [B, T - 1, d]
        yield acts.reshape(-1, acts.shape[-1])  # [n, d]
