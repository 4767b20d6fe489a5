"""Shape and activation settings of one sparse autoencoder."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import torch

Architecture = Literal["relu", "topk", "batchtopk", "jumprelu", "gated", "matryoshka"]
ARCHITECTURES: tuple[str, ...] = ("relu", "topk", "batchtopk", "jumprelu", "gated", "matryoshka")
# Architectures that keep k latents per token (topk) or k per token on average over a batch.
K_ARCHITECTURES: tuple[str, ...] = ("topk", "batchtopk", "matryoshka")
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
    """Latent nonlinearity: 'relu' (L1 penalty), 'topk' (k largest per token), 'batchtopk' (k times
    the token count largest over the batch), 'jumprelu' (learned thresholds, L0 penalty), 'gated'
    (gate and magnitude paths) or 'matryoshka' (batchtopk with nested-prefix losses)."""
    k: int | None = 32
    """Latents kept per token by 'topk', on average by 'batchtopk' and 'matryoshka'; else None."""
    dtype: str = "float32"
    """Parameter dtype, one of float32, float16, bfloat16, float64."""
    apply_b_dec_to_input: bool = True
    """Subtract b_dec from the input before encoding."""
    hook_name: str = ""
    """Host hook point the SAE was trained on, for example blocks.6.hook_resid_post."""
    model_name: str = ""
    """Host model the SAE was trained on."""
    jumprelu_threshold: float = 0.1
    """Initial threshold of every 'jumprelu' latent, in units of the (normalised) input."""
    jumprelu_bandwidth: float = 0.1
    """Width of the rectangle kernel in the 'jumprelu' straight-through estimator."""
    matryoshka_widths: tuple[int, ...] | None = None
    """Nested prefix sizes for 'matryoshka', increasing and ending at d_sae, e.g. 512,2048,4608."""

    def __post_init__(self) -> None:
        self._check_types()
        if self.d_in < 1 or self.d_sae < 1:
            raise ValueError(
                f"d_in and d_sae must be positive, got d_in={self.d_in}, d_sae={self.d_sae}"
            )
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"architecture={self.architecture!r} is not supported; use one of {ARCHITECTURES}"
            )
        if self.architecture in K_ARCHITECTURES:
            if self.k is None or not 1 <= self.k <= self.d_sae:
                raise ValueError(
                    f"k={self.k} is invalid for architecture={self.architecture!r}; "
                    f"use 1 <= k <= d_sae={self.d_sae}"
                )
        elif self.k is not None:
            raise ValueError(
                f"k={self.k} only applies to architectures {K_ARCHITECTURES}; set k=None"
            )
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype={self.dtype!r} is not supported; use one of {tuple(DTYPES)}")
        if not self.jumprelu_threshold >= 0:
            raise ValueError(f"jumprelu_threshold={self.jumprelu_threshold} must be >= 0")
        if not self.jumprelu_bandwidth > 0:
            raise ValueError(f"jumprelu_bandwidth={self.jumprelu_bandwidth} must be positive")
        self._check_matryoshka_widths()

    def _check_types(self) -> None:
        """Raise a ``TypeError`` naming the field whose value has the wrong type.

        Values from ``cfg.json`` are not checked by Python, so ``"k": "eight"`` would otherwise
        fail later inside a comparison with a message that names no field.
        """
        expected: dict[str, tuple[str, tuple[type, ...]]] = {
            "d_in": ("an integer", (int,)),
            "d_sae": ("an integer", (int,)),
            "architecture": ("a string", (str,)),
            "k": ("an integer or None", (int, type(None))),
            "dtype": ("a string", (str,)),
            "apply_b_dec_to_input": ("a boolean", (bool,)),
            "hook_name": ("a string", (str,)),
            "model_name": ("a string", (str,)),
            "jumprelu_threshold": ("a number", (int, float)),
            "jumprelu_bandwidth": ("a number", (int, float)),
            "matryoshka_widths": ("a list of integers or None", (tuple, list, type(None))),
        }
        for name, (description, types) in expected.items():
            value = getattr(self, name)
            # bool is a subclass of int, but a boolean is never a size or a threshold.
            wrong_bool = isinstance(value, bool) and bool not in types
            if wrong_bool or not isinstance(value, types):
                raise TypeError(
                    f"{name}={value!r} is invalid: it must be {description}, "
                    f"not {type(value).__name__}"
                )

    def _check_matryoshka_widths(self) -> None:
        widths = self.matryoshka_widths
        if widths is None:
            if self.architecture == "matryoshka":
                example = (max(1, self.d_sae // 16), max(1, self.d_sae // 4), self.d_sae)
                raise ValueError(
                    "architecture='matryoshka' needs matryoshka_widths, increasing prefix sizes "
                    f"that end at d_sae={self.d_sae}, for example {example[0]},{example[1]},"
                    f"{example[2]} (the tuple {example} in Python)"
                )
            return
        if self.architecture != "matryoshka":
            raise ValueError(
                f"matryoshka_widths={widths} only applies to architecture='matryoshka'; set it "
                "to None"
            )
        # A JSON round trip turns the tuple into a list; keep the field hashable and comparable.
        object.__setattr__(self, "matryoshka_widths", tuple(widths))
        widths = self.matryoshka_widths
        integers = all(isinstance(width, int) for width in widths)
        increasing = all(a < b for a, b in zip(widths, widths[1:], strict=False))
        if not (widths and integers and increasing and widths[0] >= 1 and widths[-1] == self.d_sae):
            raise ValueError(
                f"matryoshka_widths={widths} is invalid; use strictly increasing positive sizes "
                f"whose last entry is d_sae={self.d_sae}"
            )

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
