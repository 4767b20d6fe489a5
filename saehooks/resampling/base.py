"""The interface every dead-latent remedy implements."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from saehooks.training.trainer import Trainer


class Remedy(Protocol):
    """A dead-latent remedy, driven by the trainer.

    ``attach`` runs once, after the trainer has attached its own trackers (its ``FireCounter`` is
    ``trainer.fires``). A remedy that adds an auxiliary loss attaches a ``PenaltyTracker`` to the
    SAE there, and the trainer then adds its weighted term like any other penalty. ``after_step``
    runs after every optimiser step; a remedy that edits weights does it there, resets the
    optimiser state of exactly the rows it edited, and returns metrics to log for that step (an
    empty dict when it did nothing).
    """

    def attach(self, trainer: Trainer) -> None: ...

    def after_step(self, trainer: Trainer) -> dict[str, float]: ...
