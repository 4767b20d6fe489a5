"""Extra reconstruction losses: the gated SAE's auxiliary term and Matryoshka's nested prefixes."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from saehooks.sae.sparse_autoencoder import SparseAutoencoder
from saehooks.trackers.base import PenaltyTracker


def squared_error(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean over tokens of the summed squared error, as in the trainer's MSE, ``[n, d_in]``."""
    return (x_hat - x).pow(2).sum(dim=-1).mean()


class GatedAuxiliaryReconstruction(PenaltyTracker):
    """Reconstruct the input from the gate path, through a frozen copy of the decoder.

    Rajamanoharan et al. (2024), "Improving Dictionary Learning with Gated Sparse Autoencoders",
    section 3.2: ``|| x - (relu(pi_gate) @ W_dec.detach() + b_dec.detach()) ||^2``. The gate
    path's Heaviside step passes no gradient, so this term is what trains the gate to pick latents
    that reconstruct well. It reads the raw input at ``hook_input`` and recomputes ``pi_gate``
    with ``b_dec`` detached as well, so the term alone gives exactly zero gradient to W_dec and
    b_dec and trains only W_enc and b_gate. The recomputation costs one extra encoder product.
    """

    hook_point_name = "hook_input"

    def observe(self, value: torch.Tensor) -> None:
        sae = self.sae
        b_dec = sae.b_dec.detach()
        centred = value - b_dec if sae.cfg.apply_b_dec_to_input else value  # [n, d_in]
        gate_acts = torch.relu(centred @ sae.W_enc + sae.b_gate)  # [n, d_sae]
        x_hat = gate_acts @ sae.W_dec.detach() + b_dec  # [n, d_in]
        self.loss = squared_error(x_hat, value)


class MatryoshkaReconstruction(PenaltyTracker):
    """Sum of the reconstruction losses of every strict prefix of the dictionary.

    Bussmann et al. (2025), "Learning Multi-Level Features with Matryoshka Sparse Autoencoders",
    section 3, after Nabeshima (2024), "Matryoshka Sparse Autoencoders" (AI Alignment Forum):
    for each width m in ``cfg.matryoshka_widths`` but the last, the latents ``acts[:, :m]`` alone
    must reconstruct the input, ``x_hat_m = acts[:, :m] @ W_dec[:m] + b_dec``. The full
    dictionary's loss is the trainer's own MSE, so it is not repeated here. Early latents thus
    learn general features that later ones refine.

    The tracker reads the latents at ``hook_acts`` and the raw input at ``hook_input``, through
    a second forward hook that it registers and removes together with its own.
    """

    hook_point_name = "hook_acts"

    def __init__(self, coefficient: float = 1.0, warmup_steps: int = 0) -> None:
        super().__init__(coefficient, warmup_steps)
        self._input_handle: RemovableHandle | None = None
        self._input: torch.Tensor | None = None

    def attach(self, sae: SparseAutoencoder, name: str) -> None:
        if sae.cfg.matryoshka_widths is None:
            raise ValueError(
                "MatryoshkaReconstruction needs an SAE whose cfg.matryoshka_widths is set"
            )
        super().attach(sae, name)
        self._input_handle = sae.hook_input.register_forward_hook(self._keep_input)

    def detach(self) -> None:
        if self._input_handle is not None:
            self._input_handle.remove()
            self._input_handle = None
        self._input = None
        super().detach()

    def _keep_input(
        self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor
    ) -> None:
        self._input = output

    def observe(self, value: torch.Tensor) -> None:
        x, self._input = self._input, None
        if x is None:
            raise RuntimeError(
                "MatryoshkaReconstruction saw hook_acts without hook_input; call the SAE's "
                "forward or encode, which pass hook_input first"
            )
        sae = self.sae
        widths = sae.cfg.matryoshka_widths
        assert widths is not None  # checked in attach
        x_hat = sae.b_dec.expand_as(x)  # [n, d_in]
        loss = x.new_zeros(())
        start = 0
        for width in widths[:-1]:
            x_hat = x_hat + value[:, start:width] @ sae.W_dec[start:width]  # [n, d_in]
            loss = loss + squared_error(x_hat, x)
            start = width
        self.loss = loss
