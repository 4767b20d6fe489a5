"""The gated SAE: one path decides which latents fire, another how strongly.

Rajamanoharan et al. (2024), "Improving Dictionary Learning with Gated Sparse Autoencoders",
section 3.1. Both paths project the centred input onto the same encoder directions ``W_enc``:

- gate: ``pi_gate = (x - b_dec) @ W_enc + b_gate``; a latent fires where ``pi_gate > 0``.
- magnitude: ``pi_mag = (x - b_dec) @ W_enc * exp(r_mag) + b_mag``; its ReLU is the value.

``acts = H(pi_gate) * relu(pi_mag)``. The Heaviside step passes no gradient, so training adds an
L1 penalty and an auxiliary reconstruction on ``relu(pi_gate)`` (``saehooks.trackers.GateL1``
and ``GatedAuxiliaryReconstruction``), which both read the hook point ``hook_gate_pre_acts``.
"""

from __future__ import annotations

import torch
from torch import nn

from saehooks.sae.config import SAEConfig
from saehooks.sae.hook_point import HookPoint
from saehooks.sae.sparse_autoencoder import SparseAutoencoder


class GatedSAE(SparseAutoencoder):
    """A gated SAE with the parameters W_enc, b_gate, r_mag, b_mag, W_dec and b_dec.

    There is no ``b_enc``, because the gate path has ``b_gate`` and the magnitude path ``b_mag``.
    The hook points are those of ``SparseAutoencoder``, with ``hook_pre_acts`` receiving the
    magnitude path's ``pi_mag``, plus ``hook_gate_pre_acts`` for the gate path's ``pi_gate``
    ``[n_tokens, d_sae]``.
    """

    def __init__(self, cfg: SAEConfig, device: torch.device | str | None = None) -> None:
        super().__init__(cfg, device)
        factory = {"device": device, "dtype": cfg.torch_dtype}
        del self.b_enc
        self.b_gate = nn.Parameter(torch.zeros(cfg.d_sae, **factory))
        # r_mag = 0 starts the magnitude path at the gate path's scale.
        self.r_mag = nn.Parameter(torch.zeros(cfg.d_sae, **factory))
        self.b_mag = nn.Parameter(torch.zeros(cfg.d_sae, **factory))
        self.hook_gate_pre_acts = HookPoint()

    def encode(self, x: torch.Tensor, gate: torch.Tensor | None = None) -> torch.Tensor:
        """Latent activations: ``[..., d_in] -> [..., d_sae]``, passing the hook points.

        ``gate`` multiplies the activations after the nonlinearity, as in every SAE here; it is
        unrelated to the gate path.
        """
        leading = x.shape[:-1]
        x_flat = self.hook_input(x.reshape(-1, self.cfg.d_in))  # [n, d_in]
        if self.cfg.apply_b_dec_to_input:
            x_flat = x_flat - self.b_dec
        projection = x_flat @ self.W_enc  # [n, d_sae], shared by both paths
        gate_pre_acts = self.hook_gate_pre_acts(projection + self.b_gate)  # [n, d_sae]
        pre_acts = self.hook_pre_acts(projection * self.r_mag.exp() + self.b_mag)  # [n, d_sae]

        acts = (gate_pre_acts > 0).to(pre_acts.dtype) * torch.relu(pre_acts)
        if gate is not None:
            acts = acts * gate.expand(*leading, self.cfg.d_sae).reshape(-1, self.cfg.d_sae)
        acts = self.hook_acts(acts)
        return acts.reshape(*leading, self.cfg.d_sae)

    def encode_pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        """Magnitude-path pre-activations ``pi_mag``: ``[n, d_in] -> [n, d_sae]``."""
        if self.cfg.apply_b_dec_to_input:
            x = x - self.b_dec
        return (x @ self.W_enc) * self.r_mag.exp() + self.b_mag
