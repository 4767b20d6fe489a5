"""Identity modules that give forward hooks a named place to attach."""

from __future__ import annotations

import torch
from torch import nn


class HookPoint(nn.Module):
    """Identity module: observers register torch forward hooks on it.

    A forward hook that returns a tensor replaces the value, so a hook point is also the place to
    edit an activation in flight.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x
