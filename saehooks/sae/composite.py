"""What every composite SAE shares: the forward contract, its hook points and config helpers.

A composite SAE is assembled from other modules (expert SAEs behind a router, a parent SAE and its
children, a hidden layer in front of the latents), but it honours the contract of
``SparseAutoencoder``, so the trainer, the hosts and the evaluation treat it like any SAE:

- ``forward(x, gate=None) -> x_hat`` for ``x`` of shape ``[..., d_in]``;
- one ``b_dec`` ``[d_in]``, subtracted from the input and added to the reconstruction;
- hook points that see flattened values: ``hook_input`` ``[n_tokens, d_in]`` (the raw input),
  ``hook_acts`` ``[n_tokens, d_sae]`` (every latent of the composite side by side, after any gate)
  and ``hook_x_hat`` ``[n_tokens, d_in]``;
- ``trackers``, ``normalize_decoder``, ``remove_parallel_decoder_grad`` and ``fold_input_scale``.

Every composite keeps its decoder rows at unit norm during training and reads its latents through
TopK, so none of them needs an L1 penalty.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, fields
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from saehooks.sae.config import DTYPES
from saehooks.sae.hook_point import HookPoint
from saehooks.sae.sparse_decode import (
    SPARSE_MAX_DENSITY,
    DecodeMode,
    check_decode_mode,
    decode_selection,
    select_nonzero,
)

ConfigT = TypeVar("ConfigT", bound="CompositeConfig")


class CompositeConfig:
    """Methods shared by the composite configs, each of which is a frozen dataclass.

    ``architecture`` is a class constant, not a field: it names the composite in ``cfg.json`` and
    on the command line, and ``to_dict`` writes it beside the fields.
    """

    architecture: ClassVar[str]
    d_in: int
    d_sae: int
    dtype: str

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    def to_dict(self) -> dict[str, Any]:
        return {"architecture": self.architecture, **asdict(self)}  # type: ignore[call-overload]  # subclasses are dataclasses

    @classmethod
    def from_dict(cls: type[ConfigT], values: dict[str, Any]) -> ConfigT:
        """Build a config from ``to_dict`` output; reject unknown keys and other architectures."""
        values = dict(values)
        architecture = values.pop("architecture", cls.architecture)
        if architecture != cls.architecture:
            raise ValueError(
                f"architecture={architecture!r} does not match {cls.__name__}, which builds "
                f"{cls.architecture!r}"
            )
        known = {field.name for field in fields(cls)}  # type: ignore[arg-type]  # a dataclass
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"unknown {cls.__name__} keys {unknown}; valid keys are {sorted(known)}"
            )
        return cls(**values)

    def check_shared_fields(self) -> None:
        """Validate the fields that every composite has. Call it from ``__post_init__``."""
        if self.d_in < 1 or self.d_sae < 1:
            raise ValueError(
                f"d_in and d_sae must be positive, got d_in={self.d_in}, d_sae={self.d_sae}"
            )
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype={self.dtype!r} is not supported; use one of {tuple(DTYPES)}")


def topk_acts(pre_acts: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` largest pre-activations of each row, clamped at 0: ``[n, d] -> [n, d]``."""
    top = pre_acts.topk(k, dim=-1, sorted=False)
    return torch.zeros_like(pre_acts).scatter(-1, top.indices, torch.relu(top.values))


class CompositeSAE(nn.Module):
    """The forward contract of a composite SAE, whose subclasses supply latents and decoder.

    Subclasses implement ``encode_centred`` (``[n, d_in] -> [n, d_sae]``, on the input with
    ``b_dec`` subtracted), provide ``W_dec`` ``[d_sae, d_in]`` as a parameter or property, and
    list the parameters that ``fold_input_scale`` multiplies and divides.
    """

    cfg: Any

    def __init__(self, cfg: CompositeConfig, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in, device=device, dtype=cfg.torch_dtype))
        self.hook_input = HookPoint()
        self.hook_acts = HookPoint()
        self.hook_x_hat = HookPoint()
        self.trackers = nn.ModuleDict()
        self.decode_mode: DecodeMode = "auto"

    def encode_centred(self, x_centred: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encode(self, x: torch.Tensor, gate: torch.Tensor | None = None) -> torch.Tensor:
        """Encode ``[..., d_in] -> [..., d_sae]``, with ``gate`` broadcast to the output."""
        d_in, d_sae = self.cfg.d_in, self.cfg.d_sae
        leading = x.shape[:-1]
        x_flat = self.hook_input(x.reshape(-1, d_in))  # [n, d_in]
        acts = self.encode_centred(x_flat - self.b_dec)  # [n, d_sae]
        if gate is not None:
            acts = acts * gate.expand(*leading, d_sae).reshape(-1, d_sae)
        acts = self.hook_acts(acts)
        return acts.reshape(*leading, d_sae)

    def decode(self, acts: torch.Tensor) -> torch.Tensor:
        """Reconstruction: ``[..., d_sae] -> [..., d_in]``, passing ``hook_x_hat``."""
        leading = acts.shape[:-1]
        x_hat = acts.reshape(-1, self.cfg.d_sae) @ self.W_dec + self.b_dec  # [n, d_in]
        return self.hook_x_hat(x_hat).reshape(*leading, self.cfg.d_in)

    def forward(self, x: torch.Tensor, gate: torch.Tensor | None = None) -> torch.Tensor:
        """Reconstruct ``x`` (``[..., d_in]``), with ``gate`` broadcast to ``[..., d_sae]``.

        ``decode_mode`` 'sparse' decodes from the non-zero latents only, 'dense' multiplies all
        of them by ``W_dec``, and 'auto' decodes sparsely when at most 1/32 of the latents of
        this batch are non-zero (``SPARSE_MAX_DENSITY``). The sparse path reads the latents after
        ``hook_acts``, so latent edits act on both.
        """
        if x.shape[-1] != self.cfg.d_in:
            raise ValueError(
                f"input has last dimension {x.shape[-1]}, but this SAE has d_in={self.cfg.d_in}"
            )
        check_decode_mode(self.decode_mode)
        acts = self.encode(x, gate)  # [..., d_sae]
        if self.decode_mode == "dense":
            return self.decode(acts)

        acts_flat = acts.reshape(-1, self.cfg.d_sae)  # [n, d_sae]
        selection = select_nonzero(acts_flat)
        sparse_enough = selection.values.numel() <= SPARSE_MAX_DENSITY * acts_flat.numel()
        if self.decode_mode == "auto" and not sparse_enough:
            return self.decode(acts)
        x_hat = decode_selection(selection, self.W_dec, self.b_dec)  # [n, d_in]
        return self.hook_x_hat(x_hat).reshape(*x.shape[:-1], self.cfg.d_in)

    # -- decoder geometry and input scale -------------------------------------------------------

    def decoder_parameters(self) -> Iterable[nn.Parameter]:
        """The parameters whose rows are decoder directions, each ``[rows, d_in]``."""
        raise NotImplementedError

    def input_parameters(self) -> Iterable[nn.Parameter]:
        """The parameters applied to the centred input, each ``[d_in, ...]``."""
        raise NotImplementedError

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Rescale every decoder row to unit norm."""
        for weight in self.decoder_parameters():
            weight /= weight.norm(dim=1, keepdim=True).clamp_min(1e-12)

    @torch.no_grad()
    def remove_parallel_decoder_grad(self) -> None:
        """Project out the gradient component along each decoder row.

        The next ``normalize_decoder`` undoes that component anyway (Bricken et al., 2023,
        "Towards Monosemanticity", appendix on the autoencoder).
        """
        for weight in self.decoder_parameters():
            if weight.grad is None:
                continue
            unit_rows = weight / weight.norm(dim=1, keepdim=True).clamp_min(1e-12)
            parallel = (weight.grad * unit_rows).sum(dim=1, keepdim=True)  # [rows, 1]
            weight.grad -= parallel * unit_rows

    @torch.no_grad()
    def fold_input_scale(self, scale: float) -> None:
        """Fold a fixed input scaling into the weights.

        After training on ``scale * x``, the folded SAE applied to raw ``x`` returns
        ``sae_before(scale * x) / scale``. The centred input shrinks by ``scale``, so every weight
        that reads it grows by ``scale``, while decoder rows and ``b_dec`` shrink by it. All latent
        activations, and with them every router decision and gate, stay the same.
        """
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale}")
        for weight in self.input_parameters():
            weight *= scale
        for weight in self.decoder_parameters():
            weight /= scale
        self.b_dec /= scale
