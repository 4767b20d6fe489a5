"""The tracker base class: a module that observes one hook point through a forward hook."""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from saehooks.sae.hook_point import HookPoint
from saehooks.sae.sparse_autoencoder import SparseAutoencoder


class Tracker(nn.Module):
    """Observe one hook point of an SAE and keep what ``observe`` derives from it.

    Subclasses name the hook point in ``hook_point_name`` and implement ``observe``. The tracker
    keeps a weak reference to its SAE, so that it can read weights such as ``W_dec`` without
    becoming their owner and without putting the SAE inside its own module tree.
    """

    hook_point_name: str = "hook_acts"

    def __init__(self) -> None:
        super().__init__()
        self._sae_ref: weakref.ref[SparseAutoencoder] | None = None
        self._handle: RemovableHandle | None = None

    @property
    def sae(self) -> SparseAutoencoder:
        sae = self._sae_ref() if self._sae_ref is not None else None
        if sae is None:
            raise RuntimeError(f"{type(self).__name__} is not attached to a live SAE")
        return sae

    @property
    def is_attached(self) -> bool:
        return self._handle is not None

    def attach(self, sae: SparseAutoencoder, name: str) -> None:
        """Register the forward hook and make the tracker a child module ``sae.trackers[name]``."""
        if self.is_attached:
            raise RuntimeError(f"{type(self).__name__} is already attached; detach it first")
        if name in sae.trackers:
            raise ValueError(f"the SAE already has a tracker named {name!r}")
        hook_point = getattr(sae, self.hook_point_name, None)
        if not isinstance(hook_point, HookPoint):
            raise ValueError(
                f"{type(self).__name__} needs hook point {self.hook_point_name!r}, which "
                f"{type(sae).__name__} does not have"
            )
        self._sae_ref = weakref.ref(sae)
        self._handle = hook_point.register_forward_hook(self._hook)
        sae.trackers[name] = self

    def detach(self) -> None:
        """Remove the forward hook and the tracker from its SAE's ``trackers``."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        sae = self._sae_ref() if self._sae_ref is not None else None
        if sae is not None:
            for name, tracker in list(sae.trackers.items()):
                if tracker is self:
                    del sae.trackers[name]
        self._sae_ref = None

    def _hook(
        self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor
    ) -> None:
        self.observe(output)

    def observe(self, value: torch.Tensor) -> None:
        """Update from the value that passed the hook point, ``[n_tokens, d]``."""
        raise NotImplementedError


class PenaltyTracker(Tracker):
    """A tracker whose ``loss`` is a term of the training objective.

    ``loss`` holds the unweighted term of the latest forward pass, with its graph. The trainer adds
    ``coefficient * warmup * loss`` for every attached penalty tracker, where ``warmup`` ramps
    linearly from 0 to 1 over ``warmup_steps`` optimiser steps, and logs the term as
    ``loss/<name>``.
    """

    def __init__(self, coefficient: float = 1.0, warmup_steps: int = 0) -> None:
        super().__init__()
        if coefficient < 0:
            raise ValueError(f"coefficient={coefficient} must be >= 0")
        self.coefficient = coefficient
        self.warmup_steps = warmup_steps
        self.loss: torch.Tensor | None = None

    def coefficient_at(self, step: int) -> float:
        """The weight of the term at optimiser step ``step`` (counting from 0)."""
        if self.warmup_steps <= 0 or step >= self.warmup_steps:
            return self.coefficient
        return self.coefficient * (step + 1) / self.warmup_steps


@contextmanager
def attached(sae: SparseAutoencoder, **trackers: Tracker) -> Iterator[SparseAutoencoder]:
    """Attach trackers by name inside a ``with`` block; detach them on exit or error."""
    done: list[Tracker] = []
    try:
        for name, tracker in trackers.items():
            tracker.attach(sae, name)
            done.append(tracker)
        yield sae
    finally:
        for tracker in done:
            tracker.detach()
