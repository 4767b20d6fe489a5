"""A mixture of expert SAEs: a router sends each token to a few small TopK SAEs."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from saehooks.sae.composite import CompositeConfig, CompositeSAE
from saehooks.sae.config import SAEConfig
from saehooks.sae.hook_point import HookPoint
from saehooks.sae.sparse_autoencoder import SparseAutoencoder


@dataclass(frozen=True)
class MixtureConfig(CompositeConfig):
    """Settings of a mixture-of-experts SAE."""

    architecture: ClassVar[str] = "moe"

    d_in: int
    """Width of the input activation."""
    d_sae: int
    """Latents of all experts together, a multiple of n_experts."""
    n_experts: int = 8
    """Mixture of experts: number of expert SAEs."""
    experts_per_token: int = 2
    """Mixture of experts: experts the router selects for each token."""
    k: int = 16
    """Latents kept per token by each selected expert (TopK)."""
    balance_coefficient: float = 1.0
    """Mixture of experts: weight of the load-balancing loss in training."""
    dtype: str = "float32"
    """Parameter dtype, one of float32, float16, bfloat16, float64."""
    hook_name: str = ""
    """Host hook point the SAE was trained on."""
    model_name: str = ""
    """Host model the SAE was trained on."""

    def __post_init__(self) -> None:
        self.check_shared_fields()
        if self.n_experts < 2 or self.d_sae % self.n_experts != 0:
            raise ValueError(
                f"n_experts={self.n_experts} must be at least 2 and divide d_sae={self.d_sae}"
            )
        if not 1 <= self.experts_per_token <= self.n_experts:
            raise ValueError(
                f"experts_per_token={self.experts_per_token} is invalid; use 1 <= "
                f"experts_per_token <= n_experts={self.n_experts}"
            )
        if not 1 <= self.k <= self.d_expert:
            raise ValueError(
                f"k={self.k} is invalid; use 1 <= k <= d_sae / n_experts = {self.d_expert}"
            )
        if self.balance_coefficient < 0:
            raise ValueError(f"balance_coefficient={self.balance_coefficient} must be >= 0")

    @property
    def d_expert(self) -> int:
        """Latents per expert."""
        return self.d_sae // self.n_experts


class MixtureOfExperts(CompositeSAE):
    """Route each token to ``experts_per_token`` of ``n_experts`` TopK SAEs and sum their outputs.

    The router is linear on the centred input ``x - b_dec``. Its softmax over all experts,
    ``[n_tokens, n_experts]``, passes ``hook_router_probs``, where the load-balancing tracker
    (``saehooks.trackers.LoadBalance``) reads it. Each token goes to the experts with the largest
    probabilities. Expert ``e`` encodes only the tokens routed to it, with ``gate`` set to the
    router probability renormalised over the selected experts. The weights of one token then sum
    to 1, as with Mixtral's softmax over the top-k router logits (Jiang et al., 2024, "Mixtral of
    Experts"). The router learns from the reconstruction through these weights.

    NOTE: with ``experts_per_token=1`` every weight is exactly 1, so the router learns from the
    load-balancing loss alone.

    The experts' latents lie side by side at ``hook_acts``: expert ``e`` owns columns
    ``e * d_expert .. (e + 1) * d_expert - 1``, and is zero on the tokens not routed to it. The
    experts share the mixture's ``b_dec``, and their own ``b_dec`` stays frozen at zero.
    """

    def __init__(self, cfg: MixtureConfig, device: torch.device | str | None = None) -> None:
        super().__init__(cfg, device)
        factory = {"device": device, "dtype": cfg.torch_dtype}
        self.W_router = nn.Parameter(torch.empty(cfg.d_in, cfg.n_experts, **factory))
        self.b_router = nn.Parameter(torch.zeros(cfg.n_experts, **factory))
        expert_cfg = SAEConfig(
            d_in=cfg.d_in,
            d_sae=cfg.d_expert,
            architecture="topk",
            k=cfg.k,
            dtype=cfg.dtype,
            apply_b_dec_to_input=False,
        )
        self.experts = nn.ModuleList(
            SparseAutoencoder(expert_cfg, device=device) for _ in range(cfg.n_experts)
        )
        for expert in self.experts:
            expert.b_dec.requires_grad_(False)
        self.hook_router_probs = HookPoint()
        self.reset_router()

    @torch.no_grad()
    def reset_router(self) -> None:
        """Draw router weights with std 1 / d_in: inputs of norm sqrt(d_in) route near-uniformly."""
        nn.init.normal_(self.W_router, std=1.0 / self.cfg.d_in)
        self.b_router.zero_()

    @property
    def W_dec(self) -> torch.Tensor:
        """Decoder rows of every expert, stacked: ``[d_sae, d_in]``."""
        return torch.cat([expert.W_dec for expert in self.experts])

    def route(self, x_centred: torch.Tensor) -> torch.Tensor:
        """Router probabilities over all experts: ``[n, d_in] -> [n, n_experts]``."""
        logits = x_centred @ self.W_router + self.b_router  # [n, n_experts]
        return self.hook_router_probs(logits.softmax(dim=-1))

    def encode_centred(self, x_centred: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        n_tokens = x_centred.shape[0]
        probs = self.route(x_centred)  # [n, n_experts]
        top = probs.topk(cfg.experts_per_token, dim=-1)  # values and indices [n, e]
        weights = top.values / top.values.sum(dim=-1, keepdim=True)  # [n, e]

        # Sort the (token, slot) pairs by expert, so one gather feeds every expert a slice.
        expert_of_slot, order = top.indices.flatten().sort(stable=True)  # [n * e] each
        token_of_slot = order // cfg.experts_per_token  # [n * e]
        counts = torch.bincount(expert_of_slot, minlength=cfg.n_experts).tolist()
        routed = x_centred[token_of_slot].split(counts)  # per expert [m_e, d_in]
        gates = weights.flatten()[order].unsqueeze(-1).split(counts)  # per expert [m_e, 1]
        act_parts = [
            expert.encode(expert_x, gate)  # [m_e, d_expert]
            for expert, expert_x, gate in zip(self.experts, routed, gates, strict=True)
            if expert_x.shape[0] > 0
        ]

        acts = x_centred.new_zeros(n_tokens, cfg.n_experts, cfg.d_expert)
        if act_parts:
            acts = acts.index_put((token_of_slot, expert_of_slot), torch.cat(act_parts))
        return acts.reshape(n_tokens, cfg.d_sae)

    def decoder_parameters(self) -> Iterable[nn.Parameter]:
        return [expert.W_dec for expert in self.experts]

    def input_parameters(self) -> Iterable[nn.Parameter]:
        return [self.W_router, *(expert.W_enc for expert in self.experts)]
