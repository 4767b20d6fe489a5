"""An SAE with a deep encoder: a hidden ReLU layer in front of the TopK latents."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from saehooks.sae.composite import CompositeConfig, CompositeSAE, topk_acts
from saehooks.sae.hook_point import HookPoint


@dataclass(frozen=True)
class DeepConfig(CompositeConfig):
    """Settings of an SAE whose encoder has one hidden layer."""

    architecture: ClassVar[str] = "deep"

    d_in: int
    """Width of the input activation."""
    d_sae: int
    """Number of latents in the dictionary."""
    k: int = 32
    """Latents kept per token (TopK)."""
    d_hidden: int | None = None
    """Deep encoder: width of the hidden layer, an even number, or None for 2 * d_in."""
    dtype: str = "float32"
    """Parameter dtype, one of float32, float16, bfloat16, float64."""
    hook_name: str = ""
    """Host hook point the SAE was trained on."""
    model_name: str = ""
    """Host model the SAE was trained on."""

    def __post_init__(self) -> None:
        self.check_shared_fields()
        if not 1 <= self.k <= self.d_sae:
            raise ValueError(f"k={self.k} is invalid; use 1 <= k <= d_sae={self.d_sae}")
        if self.d_hidden is not None and (self.d_hidden < 2 or self.d_hidden % 2 != 0):
            raise ValueError(f"d_hidden={self.d_hidden} must be an even number >= 2, or None")

    @property
    def hidden_width(self) -> int:
        """Width of the hidden layer, with None resolved to 2 * d_in."""
        return self.d_hidden if self.d_hidden is not None else 2 * self.d_in


class DeepEncoderSAE(CompositeSAE):
    """x_hat = topk(relu((x - b_dec) @ W_hidden + b_hidden) @ W_enc + b_enc) @ W_dec + b_dec.

    The encoder is a two-layer network. The decoder stays linear, so every latent still owns one
    decoder direction. ``hook_hidden`` sees the hidden layer ``[n_tokens, d_hidden]`` and
    ``hook_pre_acts`` the latents before TopK ``[n_tokens, d_sae]``.

    The initialisation makes the deep encoder start as the tied linear one of a TopK SAE. The
    hidden units come in pairs ``relu(x_c @ p)`` and ``relu(-x_c @ p)`` along orthonormal
    directions ``p``, and the encoder weights of the pair are ``+q`` and ``-q``, so the latent
    pre-activations equal ``x_c @ P @ P.T @ W_dec.T``: exactly ``x_c @ W_dec.T`` when
    ``d_hidden >= 2 * d_in``, and its projection on the span of ``P`` when the layer is narrower.
    Whatever the deep encoder gains or loses then comes from training the hidden layer.
    """

    def __init__(self, cfg: DeepConfig, device: torch.device | str | None = None) -> None:
        super().__init__(cfg, device)
        factory = {"device": device, "dtype": cfg.torch_dtype}
        d_hidden = cfg.hidden_width
        self.W_hidden = nn.Parameter(torch.empty(cfg.d_in, d_hidden, **factory))
        self.b_hidden = nn.Parameter(torch.zeros(d_hidden, **factory))
        self.W_enc = nn.Parameter(torch.empty(d_hidden, cfg.d_sae, **factory))
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae, **factory))
        self.W_dec = nn.Parameter(torch.empty(cfg.d_sae, cfg.d_in, **factory))
        self.hook_hidden = HookPoint()
        self.hook_pre_acts = HookPoint()
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Draw unit-norm decoder rows and set the encoder to start as their tied transpose."""
        d_in, half = self.cfg.d_in, self.cfg.hidden_width // 2
        nn.init.kaiming_uniform_(self.W_dec)
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True)

        # Orthonormal columns (half <= d_in) or rows (half > d_in) of P [d_in, half].
        gaussian = torch.randn(max(d_in, half), min(d_in, half), dtype=torch.float64)
        q, _ = torch.linalg.qr(gaussian)  # [max, min], orthonormal columns
        directions = q if half <= d_in else q.T  # [d_in, half]
        tied = directions.T @ self.W_dec.double().T  # [half, d_sae]
        self.W_hidden.copy_(torch.cat([directions, -directions], dim=1))  # [d_in, d_hidden]
        self.W_enc.copy_(torch.cat([tied, -tied], dim=0))  # [d_hidden, d_sae]
        self.b_hidden.zero_()
        self.b_enc.zero_()
        self.b_dec.zero_()

    def encode_centred(self, x_centred: torch.Tensor) -> torch.Tensor:
        hidden = self.hook_hidden(torch.relu(x_centred @ self.W_hidden + self.b_hidden))
        pre_acts = self.hook_pre_acts(hidden @ self.W_enc + self.b_enc)  # [n, d_sae]
        return topk_acts(pre_acts, self.cfg.k)

    def decoder_parameters(self) -> Iterable[nn.Parameter]:
        return [self.W_dec]

    def input_parameters(self) -> Iterable[nn.Parameter]:
        return [self.W_hidden]
