"""Shared fixtures: fixed seeds and the opt-in marker for tests that load SmolLM2."""

from __future__ import annotations

import random

import pytest
import torch


@pytest.fixture(autouse=True)
def fixed_seed() -> None:
    random.seed(0)
    torch.manual_seed(0)
