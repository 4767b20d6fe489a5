"""A tiny ReLU SAE whose latents 1, 4 and 6 never fire, in a trainer with a remedy."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch

from saehooks.resampling import RemedyConfig, build_remedies
from saehooks.sae import SAEConfig
from saehooks.training.config import TrainingConfig
from saehooks.training.trainer import Trainer, new_sae

D_IN, D_SAE, BATCH = 6, 8, 8
DEAD = (1, 4, 6)


def batches(n_batches: int, seed: int = 3) -> Iterator[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    for _ in range(n_batches):
        yield torch.randn(BATCH, D_IN, generator=generator)


@pytest.fixture
def make_trainer() -> Callable[..., Trainer]:
    """Build a trainer on an SAE whose latents in ``DEAD`` have b_enc = -100 and never fire.

    The other latents have b_enc = 5 and fire on almost every input. The windowed dead test
    covers two batches (16 tokens).
    """

    def make(architecture: str = "relu", **remedy_settings: object) -> Trainer:
        k = 3 if architecture in ("topk", "batchtopk") else None
        sae = new_sae(SAEConfig(d_in=D_IN, d_sae=D_SAE, architecture=architecture, k=k), seed=0)
        bias = getattr(sae, "b_enc", None)  # a gated SAE has none
        if bias is not None:
            with torch.no_grad():
                bias.fill_(5.0)
                bias[list(DEAD)] = -100.0
        cfg = TrainingConfig(
            total_tokens=100 * BATCH,
            batch_size=BATCH,
            lr=1e-3,
            lr_warmup_steps=0,
            lr_decay_fraction=0.0,
            l1_coefficient=0.01,
            l1_warmup_fraction=0.0,
            normalize_activations=False,
            b_dec_init="zeros",
            grad_clip_norm=None,
            dead_window_tokens=2 * BATCH,
        )
        remedy_cfg = RemedyConfig(**remedy_settings)  # type: ignore[arg-type]  # test settings
        return Trainer(sae, cfg, progress=False, remedies=build_remedies(remedy_cfg))

    return make
