"""A one-layer sparse autoencoder whose internals are hook points."""

from __future__ import annotations

import torch
from torch import nn

from saehooks.sae.config import K_ARCHITECTURES, SAEConfig
from saehooks.sae.hook_point import HookPoint
from saehooks.sae.sparse_decode import (
    DecodeMode,
    LatentSelection,
    check_decode_mode,
    decode_selection,
    prefers_sparse_decode,
    select_topk,
    selected_pre_acts,
)


class SparseAutoencoder(nn.Module):
    """x_hat = act((x - b_dec) @ W_enc + b_enc) @ W_dec + b_dec, with hook points in between.

    ``forward`` accepts ``x`` of shape ``[..., d_in]`` and returns only ``x_hat`` of the same
    shape. The hook points see the inputs flattened to ``[n_tokens, d]``:

    - ``hook_input``: the raw input, before b_dec is subtracted.
    - ``hook_pre_acts``: encoder outputs before the nonlinearity, ``[n_tokens, d_sae]``.
    - ``hook_acts``: latent activations after the nonlinearity and the gate, ``[n_tokens, d_sae]``.
    - ``hook_x_hat``: the reconstruction, ``[n_tokens, d_in]``.

    Losses and statistics come from trackers (``saehooks.trackers``) attached to these hook points;
    the SAE owns them as child modules in ``self.trackers`` so that they move and save with it.

    ``decode_mode`` chooses how ``forward`` decodes a TopK, BatchTopK or Matryoshka SAE:
    'sparse' sums the decoder rows of the latents ``select_latents`` keeps
    (``saehooks.sae.sparse_decode``), 'dense' multiplies the full ``[n_tokens, d_sae]`` latents
    by ``W_dec``, and 'auto' (the default) picks sparse where ``prefers_sparse_decode`` measured
    it faster. Both give the same values and gradients, and ``hook_acts`` receives the dense
    latents either way. A hook on ``hook_acts`` that replaces or edits the latents in place makes
    that forward pass decode the edited latents densely. Other architectures, ``encode`` and
    ``decode`` always run dense.
    """

    def __init__(self, cfg: SAEConfig, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        factory = {"device": device, "dtype": cfg.torch_dtype}
        self.W_enc = nn.Parameter(torch.empty(cfg.d_in, cfg.d_sae, **factory))
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae, **factory))
        self.W_dec = nn.Parameter(torch.empty(cfg.d_sae, cfg.d_in, **factory))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in, **factory))

        self.hook_input = HookPoint()
        self.hook_pre_acts = HookPoint()
        self.hook_acts = HookPoint()
        self.hook_x_hat = HookPoint()
        self.trackers = nn.ModuleDict()
        self.decode_mode: DecodeMode = "auto"
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Draw random decoder rows of a fixed norm and tie the encoder to their transpose.

        TopK SAEs start with unit-norm rows, as in Gao et al. (2024), "Scaling and evaluating
        sparse autoencoders", section 2.3, where tied initialisation keeps latents alive early in
        training; so do the other architectures that train with unit-norm rows. ReLU SAEs, whose
        L1 penalty is weighted by the decoder norms, start with rows of norm 0.1, as in
        Anthropic's "Update on how we train SAEs" (Circuits Updates, April 2024). Every bias
        (``b_*``) is zeroed; other parameters of subclasses keep their values.
        """
        row_norm = 0.1 if self.cfg.architecture == "relu" else 1.0
        nn.init.kaiming_uniform_(self.W_dec)
        self.W_dec *= row_norm / self.W_dec.norm(dim=1, keepdim=True)
        self.W_enc.copy_(self.W_dec.T)
        for name, parameter in self.named_parameters(recurse=False):
            if name.startswith("b_"):
                parameter.zero_()

    # -- forward pass --------------------------------------------------------------------------

    def encode_pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder outputs before the nonlinearity: ``[n, d_in] -> [n, d_sae]``."""
        if self.cfg.apply_b_dec_to_input:
            x = x - self.b_dec
        return x @ self.W_enc + self.b_enc

    def activation(self, pre_acts: torch.Tensor) -> torch.Tensor:
        """Apply the nonlinearity along the latent (last) axis."""
        if self.cfg.architecture == "relu":
            return torch.relu(pre_acts)
        assert self.cfg.k is not None  # guaranteed by SAEConfig for 'topk'
        top = pre_acts.topk(self.cfg.k, dim=-1, sorted=False)
        acts = torch.zeros_like(pre_acts)
        return acts.scatter(-1, top.indices, torch.relu(top.values))

    def encode(self, x: torch.Tensor, gate: torch.Tensor | None = None) -> torch.Tensor:
        """Latent activations: ``[..., d_in] -> [..., d_sae]``, passing the hook points."""
        leading = x.shape[:-1]
        x_flat = self.hook_input(x.reshape(-1, self.cfg.d_in))  # [n, d_in]
        pre_acts = self.hook_pre_acts(self.encode_pre_acts(x_flat))  # [n, d_sae]
        acts = self.activation(pre_acts)
        if gate is not None:
            acts = acts * gate.expand(*leading, self.cfg.d_sae).reshape(-1, self.cfg.d_sae)
        acts = self.hook_acts(acts)
        return acts.reshape(*leading, self.cfg.d_sae)

    def decode(self, acts: torch.Tensor) -> torch.Tensor:
        """Reconstruction: ``[..., d_sae] -> [..., d_in]``, passing ``hook_x_hat``."""
        leading = acts.shape[:-1]
        x_hat = acts.reshape(-1, self.cfg.d_sae) @ self.W_dec + self.b_dec  # [n, d_in]
        return self.hook_x_hat(x_hat).reshape(*leading, self.cfg.d_in)

    def forward(self, x: torch.Tensor, gate: torch.Tensor | None = None) -> torch.Tensor:
        """Reconstruct ``x`` (``[..., d_in]``); ``gate`` broadcasts to ``[..., d_sae]``."""
        if x.shape[-1] != self.cfg.d_in:
            raise ValueError(
                f"input has last dimension {x.shape[-1]}, but this SAE has d_in={self.cfg.d_in}"
            )
        if self._decodes_sparsely():
            return self._forward_sparse(x, gate)
        return self.decode(self.encode(x, gate))

    def select_latents(self, pre_acts: torch.Tensor) -> LatentSelection:
        """Select the latents that ``activation`` keeps, in CSR form: ``[n, d_sae]`` -> nnz values.

        Raises:
            ValueError: ``cfg.architecture`` is not 'topk'. ``BatchTopKSAE`` overrides this
                method for 'batchtopk' and 'matryoshka'.
        """
        if self.cfg.architecture != "topk":
            raise ValueError(
                f"architecture={self.cfg.architecture!r} has no latent selection; sparse "
                "decoding needs 'topk', 'batchtopk' or 'matryoshka'"
            )
        assert self.cfg.k is not None  # guaranteed by SAEConfig for 'topk'
        return select_topk(pre_acts, self.cfg.k)

    def _decodes_sparsely(self) -> bool:
        check_decode_mode(self.decode_mode)
        if self.cfg.architecture not in K_ARCHITECTURES or self.decode_mode == "dense":
            return False
        assert self.cfg.k is not None  # guaranteed by SAEConfig for the K_ARCHITECTURES
        return self.decode_mode == "sparse" or prefers_sparse_decode(self.cfg.k, self.cfg.d_sae)

    def _forward_sparse(self, x: torch.Tensor, gate: torch.Tensor | None) -> torch.Tensor:
        """``forward`` that decodes from the latents ``select_latents`` keeps.

        Two further shortcuts keep the dense ``[n, d_sae]`` tensors out of training. With no
        hook on ``hook_pre_acts`` and the plain linear encoder, the encoder's gradients are
        computed at the selected latents only (``SelectedPreActs``). When every hook on
        ``hook_acts`` belongs to a tracker with ``observe_selection``, the trackers read the
        selection and the dense latents are never formed. Values and gradients stay those of
        the dense pass.
        """
        cfg = self.cfg
        leading = x.shape[:-1]
        x_flat = self.hook_input(x.reshape(-1, cfg.d_in))  # [n, d_in]
        if self._encodes_sparsely():
            selection = self._select_with_sparse_gradients(x_flat)
        else:
            pre_acts = self.hook_pre_acts(self.encode_pre_acts(x_flat))  # [n, d_sae]
            selection = self.select_latents(pre_acts)  # nnz values
        if gate is not None:
            gate_flat = gate.expand(*leading, cfg.d_sae).reshape(-1)  # [n * d_sae]
            selection = selection._replace(values=selection.values * gate_flat[selection.positions])

        n_tokens = x_flat.shape[0]
        observers = selection_observers(self.hook_acts)
        if observers is not None:
            for observer in observers:
                observer.observe_selection(selection, n_tokens)
            x_hat = decode_selection(selection, self.W_dec, self.b_dec)  # [n, d_in]
            return self.hook_x_hat(x_hat).reshape(*leading, cfg.d_in)

        # hook_acts still receives the dense latents. A hook that edits them in place bumps their
        # version counter. Inference tensors have none, so there any hook counts as an edit.
        values = selection.values
        dense = torch.zeros(n_tokens * cfg.d_sae, dtype=values.dtype, device=values.device)
        acts = dense.scatter(0, selection.positions, values).reshape(n_tokens, cfg.d_sae)
        version = None if acts.is_inference() else acts._version
        hooked_acts = self.hook_acts(acts)
        if version is None:
            edited = hooked_acts is not acts or bool(self.hook_acts._forward_hooks)
        else:
            edited = hooked_acts is not acts or acts._version != version
        if edited:
            x_hat = hooked_acts @ self.W_dec + self.b_dec  # [n, d_in]
        else:
            x_hat = decode_selection(selection, self.W_dec, self.b_dec)  # [n, d_in]
        return self.hook_x_hat(x_hat).reshape(*leading, cfg.d_in)

    def _encodes_sparsely(self) -> bool:
        """Return whether the encoder's gradients may skip the latents the selection dropped.

        That needs the plain linear encoder of this class and no hook on ``hook_pre_acts``,
        which could read or edit the dense pre-activations.
        """
        hook_point = self.hook_pre_acts
        return (
            type(self).encode_pre_acts is SparseAutoencoder.encode_pre_acts
            and not hook_point._forward_hooks
            and not hook_point._forward_pre_hooks
        )

    def _select_with_sparse_gradients(self, x_flat: torch.Tensor) -> LatentSelection:
        """Select latents as ``select_latents`` does, with gradients through the kept ones only.

        The selection's values are ``relu`` of the pre-activations at the kept latents, so the
        gradients equal the dense pass's: a dropped latent passes none there either.
        """
        centred = x_flat - self.b_dec if self.cfg.apply_b_dec_to_input else x_flat  # [n, d_in]
        with torch.no_grad():
            pre_acts = torch.addmm(self.b_enc, centred, self.W_enc)  # [n, d_sae]
            selection = self.select_latents(pre_acts)
            raw = pre_acts.reshape(-1)[selection.positions]  # [nnz]
        raw = selected_pre_acts(raw, centred, self.W_enc, self.b_enc, selection)
        return selection._replace(values=torch.relu(raw))

    # -- decoder geometry used during training --------------------------------------------------

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Rescale every decoder row to unit norm."""
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)

    @torch.no_grad()
    def remove_parallel_decoder_grad(self) -> None:
        """Project out the gradient component along each decoder row.

        With unit-norm rows enforced after every step, that component only changes the norm,
        which the next ``normalize_decoder`` undoes (Bricken et al., 2023, "Towards
        Monosemanticity", appendix on the autoencoder).
        """
        if self.W_dec.grad is None:
            return
        unit_rows = self.W_dec / self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)
        parallel = (self.W_dec.grad * unit_rows).sum(dim=1, keepdim=True)  # [d_sae, 1]
        self.W_dec.grad -= parallel * unit_rows

    @torch.no_grad()
    def fold_input_scale(self, scale: float) -> None:
        """Fold a fixed input scaling into the weights.

        After training on ``scale * x``, the folded SAE applied to raw ``x`` returns
        ``sae_before(scale * x) / scale``: W_enc is multiplied by ``scale``, W_dec and b_dec are
        divided by it, and b_enc and the latent activations stay the same.
        """
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale}")
        self.W_enc *= scale
        self.W_dec /= scale
        self.b_dec /= scale


def selection_observers(hook_point: HookPoint) -> list[nn.Module] | None:
    """Return the trackers behind every hook on ``hook_point``, or None unless all read selections.

    A tracker reads selections when it has an ``observe_selection(selection, n_tokens)``
    method. Any other hook (a user's function, an intervention) needs the dense latents.
    """
    if hook_point._forward_pre_hooks:
        return None
    observers = []
    for hook in hook_point._forward_hooks.values():
        owner = getattr(hook, "__self__", None)
        if getattr(owner, "observe_selection", None) is None:
            return None
        observers.append(owner)
    return observers
