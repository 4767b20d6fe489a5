"""Configs for the data pipeline and the training loop; the SAE's own config is ``SAEConfig``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, TypeVar

from saehooks.sae.sparse_decode import DECODE_MODES, DecodeMode

BDecInit = Literal["geometric_median", "mean", "zeros"]
B_DEC_INITS: tuple[str, ...] = ("geometric_median", "mean", "zeros")
L0Penalty = Literal["step", "tanh"]
L0_PENALTIES: tuple[str, ...] = ("step", "tanh")
HostDtype = Literal["float32", "bfloat16"]
HOST_DTYPES: tuple[str, ...] = ("float32", "bfloat16")

ConfigT = TypeVar("ConfigT")


def config_from_dict(cls: type[ConfigT], values: dict[str, Any]) -> ConfigT:
    """Build a dataclass config, raising on keys the class does not define."""
    known = {field.name for field in fields(cls)}  # type: ignore[arg-type]  # cls is a dataclass
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {unknown}; valid keys are {sorted(known)}")
    return cls(**values)


@dataclass(frozen=True)
class DataConfig:
    """Where activations come from: host model, hook, corpus and packing."""

    model: str = "smollm2"
    """Host model: 'smollm2' (the embedded default), a local HF model folder, or a hub name."""
    hook_name: str = "blocks.6.hook_resid_post"
    """Host hook point to train on, in TransformerLens spelling."""
    corpus: str = "wiki"
    """Text source: 'wiki' (embedded Wikipedia summaries), a text file or folder, a .jsonl file, or
    'hf:NAME[:SPLIT]'."""
    text_field: str = "text"
    """Field that holds the text in a .jsonl corpus or a Hugging Face dataset."""
    context_size: int = 128
    """Tokens per packed context, BOS included."""
    harvest_batch_size: int = 16
    """Contexts per host forward pass."""
    buffer_tokens: int = 131_072
    """Activations held in the shuffling buffer."""
    eval_fraction: float = 0.03
    """Fraction of documents held out for evaluation; training never sees them."""
    drop_bos: bool = True
    """Leave BOS positions out of the training activations."""
    shuffle_seed: int = 0
    """Seed for the order of training documents; the held-out split does not depend on it."""
    host_dtype: HostDtype = "float32"
    """Dtype the host model runs in, 'float32' or 'bfloat16'. Activations are cast to float32 as
    they leave the host, and the SAE trains in its own dtype."""

    def __post_init__(self) -> None:
        if self.context_size < 2:
            raise ValueError(
                f"context_size={self.context_size} must be at least 2 (BOS and one token)"
            )
        if self.harvest_batch_size < 1:
            raise ValueError(f"harvest_batch_size={self.harvest_batch_size} must be positive")
        if self.buffer_tokens < 2:
            raise ValueError(f"buffer_tokens={self.buffer_tokens} must be at least 2")
        if not 0.0 < self.eval_fraction < 1.0:
            raise ValueError(
                f"eval_fraction={self.eval_fraction} must lie in the open range (0, 1)"
            )
        if self.host_dtype not in HOST_DTYPES:
            raise ValueError(f"host_dtype={self.host_dtype!r} is invalid; use one of {HOST_DTYPES}")


@dataclass(frozen=True)
class TrainingConfig:
    """Optimiser, schedules and bookkeeping of the training loop."""

    total_tokens: int = 1_000_000
    """Training activations to consume."""
    batch_size: int = 1024
    """Activations per optimiser step."""
    lr: float = 1e-3
    """Peak Adam learning rate."""
    adam_betas: tuple[float, float] = (0.9, 0.999)
    """Adam's moment decay rates."""
    lr_warmup_steps: int = 50
    """Steps of linear learning-rate warm-up from 0."""
    lr_decay_fraction: float = 0.2
    """Final fraction of steps over which the learning rate decays linearly to 0."""
    l1_coefficient: float = 5.0
    """Weight of the L1 penalty of 'relu' (decoder-norm-weighted) and 'gated' (on the gate path)."""
    l1_warmup_fraction: float = 0.05
    """Fraction of steps over which the L1 or L0 coefficient ramps up linearly from 0."""
    l0_coefficient: float = 2.0
    """Weight of the L0 penalty of 'jumprelu' SAEs."""
    l0_penalty: L0Penalty = "step"
    """L0 measure of 'jumprelu': 'step' (straight-through estimator) or 'tanh' (smoothed)."""
    b_dec_init: BDecInit = "geometric_median"
    """How to initialise b_dec from the first buffer."""
    normalize_activations: bool = True
    """Scale inputs so that E||x|| = sqrt(d_in) while training; folded into the weights at save."""
    grad_clip_norm: float | None = 1.0
    """Clip the gradient's global norm to this value; None disables clipping."""
    dead_window_tokens: int = 250_000
    """A latent that fired on none of the last this-many tokens counts as dead."""
    log_every: int = 10
    """Steps between progress-bar updates; metrics are written every step."""
    seed: int = 0
    """Seed for SAE initialisation and buffer shuffling."""
    decode_mode: DecodeMode = "auto"
    """Decoder of SAEs with TopK latents in training: 'sparse' (sum the decoder rows of the
    non-zero latents), 'dense' (multiply all d_sae latents) or 'auto' (sparse while k / d_sae <=
    1/32, or for composites while at most 1/32 of the batch's latents are non-zero, where it
    measured faster). Both give the same values and gradients."""

    def __post_init__(self) -> None:
        for name in ("total_tokens", "batch_size", "dead_window_tokens", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be positive")
        if self.batch_size > self.total_tokens:
            raise ValueError(
                f"batch_size={self.batch_size} exceeds total_tokens={self.total_tokens}, so the "
                "token budget does not cover one full batch; lower batch_size or raise total_tokens"
            )
        if not self.lr > 0:
            raise ValueError(f"lr={self.lr} must be positive")
        if self.lr_warmup_steps < 0:
            raise ValueError(f"lr_warmup_steps={self.lr_warmup_steps} must be >= 0")
        for name in ("lr_decay_fraction", "l1_warmup_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}={getattr(self, name)} must lie in [0, 1]")
        for name in ("l1_coefficient", "l0_coefficient"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0")
        if self.l0_penalty not in L0_PENALTIES:
            raise ValueError(
                f"l0_penalty={self.l0_penalty!r} is invalid; use one of {L0_PENALTIES}"
            )
        if self.b_dec_init not in B_DEC_INITS:
            raise ValueError(f"b_dec_init={self.b_dec_init!r} is invalid; use one of {B_DEC_INITS}")
        if self.grad_clip_norm is not None and not self.grad_clip_norm > 0:
            raise ValueError(f"grad_clip_norm={self.grad_clip_norm} must be positive or None")
        if self.decode_mode not in DECODE_MODES:
            raise ValueError(
                f"decode_mode={self.decode_mode!r} is invalid; use one of {DECODE_MODES}"
            )

    @property
    def total_steps(self) -> int:
        return self.total_tokens // self.batch_size

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
