"""Trackers that keep what remedies need from recent forward passes: inputs, residuals, losses."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from saehooks.sae.sparse_autoencoder import SparseAutoencoder
from saehooks.trackers.base import Tracker


class ValueCapture:
    """Keep the latest value that passed one hook point of an SAE (no copy, graph kept)."""

    def __init__(self, hook_point_name: str) -> None:
        self.hook_point_name = hook_point_name
        self.value: torch.Tensor | None = None
        self._handle: RemovableHandle | None = None

    def attach(self, sae: SparseAutoencoder) -> None:
        hook_point = getattr(sae, self.hook_point_name, None)
        if not isinstance(hook_point, nn.Module):
            raise ValueError(
                f"{type(sae).__name__} has no hook point {self.hook_point_name!r} to read from"
            )
        self._handle = hook_point.register_forward_hook(self._hook)

    def detach(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self.value = None

    def _hook(
        self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor
    ) -> None:
        self.value = output

    def require(self) -> torch.Tensor:
        """The captured value; raises when the hook point has not run since attaching."""
        if self.value is None:
            raise RuntimeError(
                f"nothing passed {self.hook_point_name!r} before it was read; the SAE must run "
                f"its hook points in the order hook_input, hook_pre_acts, hook_acts, hook_x_hat"
            )
        return self.value


class ResidualTracker(Tracker):
    """A tracker on ``hook_x_hat`` that also reads the input of the same forward pass.

    ``observe_residual(x, x_hat)`` receives both as ``[n_tokens, d_in]``. The latest values of
    ``hook_input`` and of the ``extra_hook_points`` are in ``self.captures``.
    """

    hook_point_name = "hook_x_hat"

    def __init__(self, extra_hook_points: tuple[str, ...] = (), **kwargs: float) -> None:
        super().__init__(**kwargs)  # reaches PenaltyTracker's arguments in a penalty subclass
        self.captures = {name: ValueCapture(name) for name in ("hook_input", *extra_hook_points)}

    def attach(self, sae: SparseAutoencoder, name: str) -> None:
        super().attach(sae, name)
        try:
            for capture in self.captures.values():
                capture.attach(sae)
        except ValueError:
            self.detach()
            raise

    def detach(self) -> None:
        for capture in self.captures.values():
            capture.detach()
        super().detach()

    def observe(self, value: torch.Tensor) -> None:
        self.observe_residual(self.captures["hook_input"].require(), value)

    def observe_residual(self, x: torch.Tensor, x_hat: torch.Tensor) -> None:
        raise NotImplementedError


class Sample(NamedTuple):
    """The filled rows of a ``RecentSample``, in ring order (see ``RecentSample.position``)."""

    inputs: torch.Tensor
    """Inputs as the SAE saw them (after any input scaling), ``[m, d_in]``."""
    residuals: torch.Tensor
    """``x - x_hat`` at the step that saw each input, ``[m, d_in]``."""
    thresholds: torch.Tensor
    """Smallest positive latent activation per token (0 when none fired or not kept), ``[m]``."""


class RecentSample(ResidualTracker):
    """A ring buffer of the last ``capacity`` training inputs, their residuals and thresholds.

    For each token it keeps the input ``x`` as the SAE saw it, the residual ``x - x_hat`` and,
    when ``keep_thresholds`` is set, the firing threshold: the smallest positive latent
    activation on that token, or 0 when no latent fired. For TopK that is the k-th largest
    pre-activation, which a latent must exceed to fire. For ReLU it is a conservative stand-in
    for the true threshold 0, and for JumpReLU it ignores that each latent has its own threshold.
    Everything is recorded when the token passes through a training step, so the residuals
    belong to the weights of that step, at most ``capacity`` tokens ago. The buffers are not
    persistent, so they stay out of checkpoints.
    """

    def __init__(self, capacity: int, d_in: int, keep_thresholds: bool = False) -> None:
        super().__init__(extra_hook_points=("hook_acts",) if keep_thresholds else ())
        self.keep_thresholds = keep_thresholds
        if capacity < 1:
            raise ValueError(f"capacity={capacity} must be positive")
        self.capacity = capacity
        self.register_buffer("inputs", torch.zeros(capacity, d_in), persistent=False)
        self.register_buffer("residuals", torch.zeros(capacity, d_in), persistent=False)
        self.register_buffer("thresholds", torch.zeros(capacity), persistent=False)
        self.position = 0  # next row to write, which is the oldest row once the ring is full
        self.filled = 0

    @torch.no_grad()
    def observe_residual(self, x: torch.Tensor, x_hat: torch.Tensor) -> None:
        residuals = x - x_hat  # [n, d_in]
        thresholds = torch.zeros(x.shape[0], device=x.device)  # [n]
        if self.keep_thresholds:
            acts = self.captures["hook_acts"].require()  # [n, d_sae]
            positive = torch.where(acts > 0, acts, torch.full_like(acts, float("inf")))
            thresholds = positive.min(dim=-1).values  # [n]
            thresholds = torch.where(thresholds.isinf(), torch.zeros_like(thresholds), thresholds)

        keep = min(x.shape[0], self.capacity)  # a batch larger than the buffer keeps its tail
        rows = (self.position + torch.arange(keep, device=self.inputs.device)) % self.capacity
        self.inputs[rows] = x[-keep:].to(self.inputs.dtype)
        self.residuals[rows] = residuals[-keep:].to(self.residuals.dtype)
        self.thresholds[rows] = thresholds[-keep:].to(self.thresholds.dtype)
        self.position = (self.position + keep) % self.capacity
        self.filled = min(self.capacity, self.filled + keep)

    def sample(self) -> Sample:
        """Views of the ``m`` filled rows."""
        return Sample(
            self.inputs[: self.filled],
            self.residuals[: self.filled],
            self.thresholds[: self.filled],
        )
