"""The benchmark workload, shared by every library, and the flags of the saehooks runs."""

from __future__ import annotations

from dataclasses import dataclass

HOOK_NAME = "blocks.6.hook_resid_post"
"""TransformerLens spelling; sparsify names the same activation ``layers.6``."""
SPARSIFY_HOOKPOINT = "layers.6"
LAYER = 6

# The flags of the saehooks run with the project's defaults for speed. Today the defaults equal
# the fp32 run, so the list is empty. Flags that become defaults (a reduced-precision host, a
# decoder choice) go here and nowhere else.
SAEHOOKS_DEFAULT_FLAGS: tuple[str, ...] = ()
# The saehooks fp32 run pins the host and SAE dtypes, which a later default could change.
SAEHOOKS_FP32_FLAGS: tuple[str, ...] = ("--host-dtype", "float32", "--dtype", "float32")


@dataclass(frozen=True)
class Workload:
    """The training and evaluation settings that every library shares."""

    train_tokens: int
    """Training activations per library."""
    eval_tokens: int
    """Held-out tokens the evaluator scores each SAE on, in whole contexts."""
    batch_tokens: int = 4096
    """Activations per optimiser step."""
    context_size: int = 128
    """Tokens per context, BOS included."""
    k: int = 32
    """Latents kept per token (TopK)."""
    d_sae: int = 4608
    """Number of latents."""
    eval_fraction: float = 0.03
    """Fraction of wiki documents held out from training, as ``saehooks train`` holds out."""

    def __post_init__(self) -> None:
        if self.train_tokens < self.batch_tokens:
            raise ValueError(
                f"train_tokens={self.train_tokens} is smaller than one batch of "
                f"{self.batch_tokens}; raise --tokens"
            )
        if self.batch_tokens % self.context_size:
            raise ValueError(
                f"batch_tokens={self.batch_tokens} must be a multiple of context_size="
                f"{self.context_size}, because sparsify counts batches in whole contexts"
            )
        if self.eval_tokens < self.context_size:
            raise ValueError(
                f"eval_tokens={self.eval_tokens} is less than one context of "
                f"{self.context_size}; raise --eval-tokens"
            )

    @property
    def batch_contexts(self) -> int:
        """Contexts per optimiser step."""
        return self.batch_tokens // self.context_size

    @property
    def steps(self) -> int:
        """Optimiser steps per library."""
        return self.train_tokens // self.batch_tokens


FULL = Workload(train_tokens=1_000_000, eval_tokens=24_576)
SHORT = Workload(train_tokens=8 * 4096, eval_tokens=2_048)
