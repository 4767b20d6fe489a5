"""Schedules and data-dependent initialisation, pinned to hand-computed values."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from saehooks.trackers import DecoderNormL1
from saehooks.training.initialization import geometric_median, normalization_scale
from saehooks.training.schedules import lr_multiplier


def test_lr_multiplier_hand_values() -> None:
    # 10 steps: warm-up over 2, decay over the final 4 (steps 6..9)
    values = [lr_multiplier(step, 10, 2, 0.4) for step in range(10)]
    assert values == pytest.approx([0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.75, 0.5, 0.25])


def test_lr_multiplier_without_warmup_or_decay() -> None:
    assert [lr_multiplier(step, 5, 0, 0.0) for step in range(5)] == [1.0] * 5


def test_penalty_coefficient_warmup_hand_values() -> None:
    penalty = DecoderNormL1(coefficient=2.0, warmup_steps=4)
    assert [penalty.coefficient_at(step) for step in range(6)] == [0.5, 1.0, 1.5, 2.0, 2.0, 2.0]
    assert DecoderNormL1(coefficient=2.0).coefficient_at(0) == 2.0


def test_normalization_scale_gives_sqrt_d_mean_norm() -> None:
    x = torch.randn(1000, 16) * 7.0 + 3.0
    scaled = x * normalization_scale(x)
    assert scaled.norm(dim=-1).mean().item() == pytest.approx(4.0, rel=1e-5)


def test_geometric_median_of_collinear_points_is_middle_point() -> None:
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0]])
    assert_close(geometric_median(x), torch.tensor([1.0, 0.0]), atol=1e-4, rtol=0)


def test_geometric_median_of_equilateral_triangle_is_centre() -> None:
    x = torch.tensor([[0.0, 0.0], [2.0, 0.0], [1.0, 3**0.5]])
    assert_close(geometric_median(x), torch.tensor([1.0, 3**0.5 / 3]), atol=1e-5, rtol=0)


def test_geometric_median_beats_mean_with_outlier() -> None:
    x = torch.randn(200, 5)
    x[0] = 1000.0
    median = geometric_median(x)

    def summed_distance(point: torch.Tensor) -> float:
        return (x - point).norm(dim=1).sum().item()

    assert summed_distance(median) < summed_distance(x.mean(dim=0))
    # the gradient of the summed distance vanishes at the minimiser
    point = median.clone().requires_grad_(True)
    (x - point).norm(dim=1).sum().backward()
    assert point.grad.norm().item() < 1e-2


@pytest.mark.parametrize("bad_value", [float("nan"), float("inf")])
def test_normalization_scale_rejects_non_finite(bad_value: float) -> None:
    x = torch.randn(10, 4)
    x[3, 1] = bad_value
    x[7, 0] = bad_value
    with pytest.raises(ValueError, match="2 of 10 activations contain NaN or infinite values"):
        normalization_scale(x)


def test_initialisation_by_blocks_matches_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    # 103 rows in blocks of 10: ten full blocks and one of 3, against the formulas in one pass.
    x = torch.randn(103, 6) * 2.0 + 0.5
    x[0] = 50.0
    points = x.double()
    reference = points.mean(dim=0)
    for _ in range(100):
        weights = 1.0 / (points - reference).norm(dim=1).clamp_min(1e-8)
        reference = (weights[:, None] * points).sum(dim=0) / weights.sum()
    expected_scale = 6**0.5 / points.norm(dim=-1).mean().item()

    monkeypatch.setattr("saehooks.training.initialization.CHUNK_ROWS", 10)
    assert normalization_scale(x) == pytest.approx(expected_scale, rel=1e-12)
    assert_close(geometric_median(x), reference.float(), atol=1e-5, rtol=0)
