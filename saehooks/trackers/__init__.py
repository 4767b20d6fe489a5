"""Modules that attach to an SAE's hook points and turn what they see into losses and statistics."""

from saehooks.trackers.base import PenaltyTracker, Tracker, attached
from saehooks.trackers.frequency import FireCounter
from saehooks.trackers.sparsity import DecoderNormL1, L0Tracker

__all__ = ["DecoderNormL1", "FireCounter", "L0Tracker", "PenaltyTracker", "Tracker", "attached"]
