"""BatchTopK: keep the k * n largest activations over a whole batch of n tokens.

Bussmann, Leask and Nanda (2024), "BatchTopK Sparse Autoencoders", section 3. Selecting over the
batch instead of per token lets the number of active latents vary from token to token while the
mean stays k. At inference a token cannot see its batch, so the SAE carries a single threshold
``threshold``: the expected smallest kept activation, estimated during training by the
``BatchTopKThreshold`` tracker. Saved, the SAE becomes a JumpReLU SAE whose latents all share that
threshold, which runs token by token.
"""

from __future__ import annotations

import dataclasses

import torch

from saehooks.sae.config import SAEConfig
from saehooks.sae.jumprelu import JumpReLUSAE
from saehooks.sae.sparse_autoencoder import SparseAutoencoder
from saehooks.sae.sparse_decode import LatentSelection, select_batch_topk


def batch_topk(pre_acts: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k * n`` largest entries of ``relu(pre_acts)`` over all of ``[n, d_sae]``.

    The selection runs over every token and latent at once, so the result depends on the batch.
    Callers flatten leading dims first, so ``[2, 3, d_sae]`` and ``[6, d_sae]`` give the same
    latents.
    """
    n_tokens = pre_acts.shape[0]
    flat = pre_acts.reshape(-1)  # [n * d_sae]
    top = flat.topk(k * n_tokens, sorted=False)
    acts = torch.zeros_like(flat).scatter(0, top.indices, torch.relu(top.values))
    return acts.reshape(pre_acts.shape)  # [n, d_sae]


class BatchTopKSAE(SparseAutoencoder):
    """An SAE whose forward pass keeps the ``cfg.k * n`` largest activations of a batch.

    Buffers, so that they land in checkpoints and in ``Trainer.export``:

    - ``threshold`` (float32 scalar): the inference threshold estimated during training.
    - ``threshold_updates`` (int64 scalar): how many batches the estimate has seen.

    ``to_jumprelu`` returns the token-by-token equivalent that ``save_sae`` writes. The
    'matryoshka' architecture uses this class too; only its training loss differs.
    """

    def __init__(self, cfg: SAEConfig, device: torch.device | str | None = None) -> None:
        super().__init__(cfg, device)
        self.register_buffer("threshold", torch.zeros((), device=device, dtype=torch.float32))
        self.register_buffer(
            "threshold_updates", torch.zeros((), device=device, dtype=torch.long)
        )

    def activation(self, pre_acts: torch.Tensor) -> torch.Tensor:
        assert self.cfg.k is not None  # guaranteed by SAEConfig for 'batchtopk' and 'matryoshka'
        return batch_topk(pre_acts, self.cfg.k)

    def select_latents(self, pre_acts: torch.Tensor) -> LatentSelection:
        assert self.cfg.k is not None  # guaranteed by SAEConfig for 'batchtopk' and 'matryoshka'
        return select_batch_topk(pre_acts, self.cfg.k)

    @torch.no_grad()
    def to_jumprelu(self) -> JumpReLUSAE:
        """Convert to a JumpReLU SAE with the same weights and every threshold set to ``threshold``.

        Raises:
            ValueError: the threshold was never estimated (no ``BatchTopKThreshold`` tracker was
                attached during training), so the JumpReLU SAE would fire like a plain ReLU.
        """
        if int(self.threshold_updates) == 0:
            raise ValueError(
                "this BatchTopK SAE has no estimated inference threshold (threshold_updates=0); "
                "train it with saehooks.training.Trainer or attach "
                "saehooks.trackers.BatchTopKThreshold during training"
            )
        cfg = dataclasses.replace(
            self.cfg, architecture="jumprelu", k=None, matryoshka_widths=None
        )
        converted = JumpReLUSAE(cfg, device=self.W_enc.device)
        for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
            getattr(converted, name).copy_(getattr(self, name))
        converted.threshold.fill_(self.threshold.item())
        return converted
