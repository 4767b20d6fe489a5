"""The interface every dead-latent remedy implements."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from saehooks.training.trainer import Trainer


class Remedy(Protocol):
    """A dead-latent remedy, driven by the trainer.

    ``attach`` runs once, after the trainer has attached its own trackers (its ``FireCounter`` is
    ``trainer.fires``) and built ``trainer.optimizer``. A remedy attaches there the trackers it
    reads from, such as a firing-frequency tracker and a sample of recent inputs. One that adds
    an auxiliary loss also attaches a ``PenaltyTracker``, whose weighted term the trainer adds
    like any other penalty. ``after_step`` runs after every optimiser step and returns flat
    metrics to log for that step, such as ``dead/detected`` and ``dead/resampled``. A remedy
    that edits weights does it there, resets Adam's moments of exactly the rows, columns and
    entries it edited, and may call ``trainer.rewarm_lr(steps)`` to ramp the learning rate up
    again. The implementations live in ``saehooks.resampling.rewrite`` (weight edits) and
    ``saehooks.resampling.auxiliary`` (auxiliary losses).
    """

    def attach(self, trainer: Trainer) -> None: ...

    def after_step(self, trainer: Trainer) -> dict[str, float]: ...
