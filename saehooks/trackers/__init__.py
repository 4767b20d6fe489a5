"""Modules that attach to an SAE's hook points and turn what they see into losses and statistics."""

from saehooks.trackers.balance import LoadBalance
from saehooks.trackers.base import PenaltyTracker, Tracker, attached
from saehooks.trackers.frequency import FireCounter, FiringEMA, WindowedFireCounter
from saehooks.trackers.l0 import StepL0Penalty, TanhL0Penalty
from saehooks.trackers.reconstruction import GatedAuxiliaryReconstruction, MatryoshkaReconstruction
from saehooks.trackers.sparsity import DecoderNormL1, GateL1, L0Tracker
from saehooks.trackers.threshold import BatchTopKThreshold

__all__ = [
    "BatchTopKThreshold",
    "DecoderNormL1",
    "FireCounter",
    "FiringEMA",
    "GateL1",
    "GatedAuxiliaryReconstruction",
    "L0Tracker",
    "LoadBalance",
    "MatryoshkaReconstruction",
    "PenaltyTracker",
    "StepL0Penalty",
    "TanhL0Penalty",
    "Tracker",
    "WindowedFireCounter",
    "attached",
]
