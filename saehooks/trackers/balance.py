"""The load-balancing loss of a mixture-of-experts SAE, read from its router probabilities."""

from __future__ import annotations

import torch

from saehooks.trackers.base import PenaltyTracker


class LoadBalance(PenaltyTracker):
    """Switch Transformer load-balancing loss: ``n_experts * sum_i f_i * P_i``.

    ``f_i`` is the fraction of the routing slots (``experts_per_token`` per token) that went to
    expert ``i``, and ``P_i`` is the mean router probability of expert ``i`` over the tokens
    (Fedus et al., 2021, "Switch Transformers", equation 4, which routes one expert per token).
    ``f_i`` counts discrete choices and carries no gradient, so the loss lowers the probabilities
    of the experts that receive the most tokens. The loss is 1 whenever ``f`` or ``P`` is
    uniform, so a value near 1 does not by itself show balanced routing: near-uniform
    probabilities whose top choices agree on every token give it too.

    Attach it to an SAE with ``hook_router_probs`` (``MixtureOfExperts``). The slots are the
    ``experts_per_token`` largest probabilities of each token, as the router selects them.
    """

    hook_point_name = "hook_router_probs"

    def __init__(
        self, experts_per_token: int, coefficient: float = 1.0, warmup_steps: int = 0
    ) -> None:
        super().__init__(coefficient, warmup_steps)
        if experts_per_token < 1:
            raise ValueError(f"experts_per_token={experts_per_token} must be positive")
        self.experts_per_token = experts_per_token

    def observe(self, value: torch.Tensor) -> None:
        n_experts = value.shape[-1]
        with torch.no_grad():
            chosen = value.topk(self.experts_per_token, dim=-1).indices.flatten()  # [n * e]
            slots = torch.bincount(chosen, minlength=n_experts).to(value.dtype)  # [n_experts]
            fraction = slots / max(chosen.numel(), 1)
        mean_probability = value.mean(dim=0)  # [n_experts]
        self.loss = n_experts * (fraction * mean_probability).sum()
