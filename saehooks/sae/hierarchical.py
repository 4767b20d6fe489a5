"""A hierarchical SAE: each latent of a parent SAE owns a small child SAE that works under it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch
from torch import nn

from saehooks.sae.composite import CompositeConfig, CompositeSAE
from saehooks.sae.config import SAEConfig
from saehooks.sae.sparse_autoencoder import SparseAutoencoder


@dataclass(frozen=True)
class HierarchicalConfig(CompositeConfig):
    """Settings of a hierarchical SAE: a TopK parent with one TopK child per parent latent."""

    architecture: ClassVar[str] = "hierarchical"

    d_in: int
    """Width of the input activation."""
    d_sae: int
    """Latents of the parent and all children together: d_parent * (1 + child_size)."""
    child_size: int = 8
    """Hierarchical: latents in each child SAE."""
    k: int = 8
    """Parent latents kept per token (TopK)."""
    child_k: int = 3
    """Hierarchical: latents kept per token by each child whose parent latent fires (TopK)."""
    dtype: str = "float32"
    """Parameter dtype, one of float32, float16, bfloat16, float64."""
    hook_name: str = ""
    """Host hook point the SAE was trained on."""
    model_name: str = ""
    """Host model the SAE was trained on."""

    def __post_init__(self) -> None:
        self.check_shared_fields()
        if self.child_size < 1 or self.d_sae % (1 + self.child_size) != 0:
            raise ValueError(
                f"d_sae={self.d_sae} must equal d_parent * (1 + child_size) with "
                f"child_size={self.child_size} >= 1; for example d_sae={512 * (1 + 8)} with "
                f"child_size=8 gives 512 parent latents"
            )
        if not 1 <= self.k <= self.d_parent:
            raise ValueError(f"k={self.k} is invalid; use 1 <= k <= d_parent={self.d_parent}")
        if not 1 <= self.child_k <= self.child_size:
            raise ValueError(
                f"child_k={self.child_k} is invalid; use 1 <= child_k <= "
                f"child_size={self.child_size}"
            )

    @property
    def d_parent(self) -> int:
        """Latents in the parent SAE, which is also the number of children."""
        return self.d_sae // (1 + self.child_size)


class HierarchicalSAE(CompositeSAE):
    """A TopK parent SAE whose latent ``j`` gates a small TopK child SAE ``j``.

    The parent and every child encode the same centred input ``x - b_dec``, and their decoded
    outputs add up to one reconstruction, so parent and children train jointly on one MSE.
    Child ``j``'s activations are multiplied by the indicator ``1[parent latent j > 0]``. It is
    computed sparsely: child ``j`` encodes only the tokens on which parent latent ``j`` fires and
    is zero on every other token.

    The gate is the indicator rather than the parent's activation, for two reasons. A child
    latent then contributes linearly in the input's magnitude, like every other latent, instead of
    quadratically through the product with its parent. So its activations read on the same scale
    as the parent's and the input-scale fold stays exact. And the indicator's derivative is zero,
    so the reconstruction gradient never pushes a parent to fire harder for the sake of its child.

    ``hook_acts`` sees ``[n_tokens, d_sae]``: the ``d_parent`` parent latents first, then child
    ``j`` in columns ``d_parent + j * child_size .. d_parent + (j + 1) * child_size - 1``. The
    parts share the composite's ``b_dec``, and their own ``b_dec`` stays frozen at zero.
    """

    def __init__(self, cfg: HierarchicalConfig, device: torch.device | str | None = None) -> None:
        super().__init__(cfg, device)
        part = {"d_in": cfg.d_in, "dtype": cfg.dtype, "apply_b_dec_to_input": False}
        parent_cfg = SAEConfig(d_sae=cfg.d_parent, architecture="topk", k=cfg.k, **part)
        child_cfg = SAEConfig(d_sae=cfg.child_size, architecture="topk", k=cfg.child_k, **part)
        self.parent = SparseAutoencoder(parent_cfg, device=device)
        self.child_saes = nn.ModuleList(
            SparseAutoencoder(child_cfg, device=device) for _ in range(cfg.d_parent)
        )
        for sae in (self.parent, *self.child_saes):
            sae.b_dec.requires_grad_(False)

    @property
    def W_dec(self) -> torch.Tensor:
        """Decoder rows of the parent, then of each child: ``[d_sae, d_in]``."""
        return torch.cat([self.parent.W_dec, *(child.W_dec for child in self.child_saes)])

    def encode_centred(self, x_centred: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        n_tokens = x_centred.shape[0]
        parent_acts = self.parent.encode(x_centred)  # [n, d_parent]

        # Sort the firing (parent latent, token) pairs by latent, so one gather feeds every child.
        parent_index, token_index = (parent_acts > 0).T.nonzero(as_tuple=True)  # [m] each
        counts = torch.bincount(parent_index, minlength=cfg.d_parent).tolist()
        routed = x_centred[token_index].split(counts)  # per child [m_j, d_in]
        child_parts = [
            child.encode(child_x)  # [m_j, child_size]
            for child, child_x in zip(self.child_saes, routed, strict=True)
            if child_x.shape[0] > 0
        ]

        child_acts = x_centred.new_zeros(n_tokens, cfg.d_parent, cfg.child_size)
        if child_parts:
            child_acts = child_acts.index_put((token_index, parent_index), torch.cat(child_parts))
        return torch.cat([parent_acts, child_acts.reshape(n_tokens, -1)], dim=1)  # [n, d_sae]

    def decoder_parameters(self) -> Iterable[nn.Parameter]:
        return [self.parent.W_dec, *(child.W_dec for child in self.child_saes)]

    def input_parameters(self) -> Iterable[nn.Parameter]:
        return [self.parent.W_enc, *(child.W_enc for child in self.child_saes)]


class ChildUsage(NamedTuple):
    """How many children of a hierarchical SAE took part in training."""

    fired: int
    """Children with at least one latent that fired."""
    moved: int
    """Children with at least one decoder row whose direction moved from its initial one."""
    learned: int
    """Children that both fired and moved."""
    total: int
    """Number of children."""


@torch.no_grad()
def child_usage(
    trained: HierarchicalSAE,
    initial: HierarchicalSAE,
    latent_fired: torch.Tensor,
    max_cosine: float = 0.99,
) -> ChildUsage:
    """Count the children that fired and whose decoders moved away from their initialisation.

    Args:
        trained: the SAE after training. Only directions count, so a folded input scale is fine.
        initial: the same architecture as initialised before training, for example rebuilt
            from the training seed with ``saehooks.training.trainer.new_sae``.
        latent_fired: ``[d_sae]`` bool, the latents that fired on some set of tokens, such as
            the trainer's ``FireCounter.ever_fired`` or ``(acts > 0).any(0)`` on held-out data.
        max_cosine: a decoder row counts as moved when the cosine similarity between its trained
            and initial directions is below this value (0.99 is a turn of about 8 degrees).
    """
    cfg = trained.cfg
    if initial.cfg != cfg:
        raise ValueError(
            "trained and initial SAEs have different configs; rebuild the initial SAE from the "
            "trained SAE's config"
        )
    if latent_fired.shape != (cfg.d_sae,):
        raise ValueError(
            f"latent_fired has shape {tuple(latent_fired.shape)}, expected ({cfg.d_sae},)"
        )
    shape = (cfg.d_parent, cfg.child_size)
    fired = latent_fired[cfg.d_parent :].reshape(shape).any(dim=1)  # [d_parent]
    rows_trained = trained.W_dec[cfg.d_parent :].float()  # [d_parent * child_size, d_in]
    rows_initial = initial.W_dec[cfg.d_parent :].float()
    cosine = torch.cosine_similarity(rows_trained, rows_initial, dim=1).reshape(shape)
    moved = (cosine < max_cosine).any(dim=1)  # [d_parent]
    return ChildUsage(
        fired=int(fired.sum()),
        moved=int(moved.sum()),
        learned=int((fired & moved).sum()),
        total=cfg.d_parent,
    )
