"""Shape and activation settings of one sparse autoencoder."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import torch

Architecture = Literal["relu", "topk"]
ARCHITECTURES: tuple[str, ...] = ("relu", "topk")
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
}


@dataclass(frozen=True)
class SAEConfig:
    """Settings that fix an SAE's parameters and forward pass."""

    d_in: int
    """Width of the input activation."""
    d_sae: int
    """Number of latents in the dictionary."""
    architecture: Architecture = "topk"
    """Latent nonlinearity: 'relu' (trained with an L1 penalty) or 'topk' (keep the k largest)."""
    k: int | None = 32
    """Latents kept per token by 'topk'; must be None for 'relu'."""
    dtype: str = "float32"
    """Parameter dtype, one of float32, float16, bfloat16, float64."""
    apply_b_dec_to_input: bool = True
    """Subtract b_dec from the input before encoding."""
    hook_name: str = ""
    """Host hook point the SAE was trained on, for example blocks.6.hook_resid_post."""
    model_name: str = ""
    """Host model the SAE was trained on."""

    def __post_init__(self) -> None:
        if self.d_in < 1 or self.d_sae < 1:
            raise ValueError(
                f"d_in and d_sae must be positive, got d_in={self.d_in}, d_sae={self.d_sae}"
            )
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"architecture={self.architecture!r} is not supported; use one of {ARCHITECTURES}"
            )
        if self.architecture == "topk":
            if self.k is None or not 1 <= self.k <= self.d_sae:
                raise ValueError(
                    f"k={self.k} is invalid for architecture='topk'; "
                    f"use 1 <= k <= d_sae={self.d_sae}"
                )
        elif self.k is not None:
            raise ValueError(f"k={self.k} only applies to architecture='topk'; set k=None")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype={self.dtype!r} is not supported; use one of {tuple(DTYPES)}")

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SAEConfig:
        """Build a config, raising on keys this class does not define."""
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown SAEConfig keys {unknown}; valid keys are {sorted(known)}")
        return cls(**values)
