"""SAEs spliced into a host, and edits of their latents while spliced.

An ``SAESplice`` turns an SAE into a splice replacement (see ``Host.splice``) for the activation
at one host hook. Its SAE's own hook points stay where they are, and a host relays what passes
through them to its own hook mechanism, under the names ``<host hook>.hook_sae_<point>``: the
SAE's ``hook_acts`` at ``blocks.6.hook_resid_post`` is ``blocks.6.hook_resid_post.hook_sae_acts``.
The relayed values have the activation's leading shape ``[B, T, ...]``, not the SAE's flattened
``[n_tokens, ...]``.

With the error term, the SAE gets a ``hook_error`` point for the length of the splice, and the
host downstream receives ``x + (acts - clean_acts) @ W_dec + (error' - error)``. Here
``clean_acts`` are the latents before any edit, and ``error' - error`` is what hooks on
``hook_error`` changed.
Without edits or hooks the host receives ``x`` itself, bit for bit, whatever the SAE's dtype.
With them, the change ``(acts - clean_acts) @ W_dec + (error' - error)`` is computed in the
SAE's dtype, cast to ``x``'s dtype and added to the original ``x``, so editing latent ``j`` by
``δ`` moves it by ``δ · W_dec[j]`` up to one rounding into ``x``'s dtype. Every SAE here decodes
linearly (``acts @ W_dec + b_dec``), which this relies on.

Latent edits (``ablate_latents``, ``clamp_latents``, ``steer_latents``) are forward hooks on the
SAE's ``hook_acts``, removed when their context ends.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from saehooks.sae.hook_point import HookPoint

SAE_HOOK_PREFIX = "hook_sae_"
"""Prefix of an SAE hook point's name under its host hook: ``hook_acts`` -> ``hook_sae_acts``."""

Relay = Callable[[str, Tensor], "Tensor | None"]
"""Receives ``(point name, value [B, T, ...])`` and returns a replacement value or None."""


def sae_point_name(point: str) -> str:
    """Return the host-side name of an SAE hook point: ``hook_acts`` -> ``hook_sae_acts``."""
    return SAE_HOOK_PREFIX + point.removeprefix("hook_")


def saes_by_hook(saes: Mapping[str, nn.Module] | Sequence[nn.Module]) -> dict[str, nn.Module]:
    """Key SAEs by host hook name: a mapping as given, a sequence by each ``sae.cfg.hook_name``.

    Raises:
        ValueError: no SAE is given, an SAE in a sequence has no ``cfg.hook_name``, or two SAEs
            of a sequence name the same hook.
    """
    if isinstance(saes, Mapping):
        by_hook = dict(saes)
    else:
        by_hook = {}
        for sae in saes:
            name = getattr(sae.cfg, "hook_name", "")
            if not name:
                raise ValueError(
                    f"{type(sae).__name__} has no cfg.hook_name; pass {{hook_name: sae}} instead"
                )
            if name in by_hook:
                raise ValueError(f"two SAEs are trained on {name!r}; splice one of them only")
            by_hook[name] = sae
    if not by_hook:
        raise ValueError("splice_saes needs at least one SAE")
    return by_hook


class SAESplice:
    """One SAE as the replacement of the activation ``[B, T, d_in]`` at one host hook.

    Use it as a context manager: entering adds the hooks that the error term and ``relay_to``
    need, and leaving removes all of them, also after an error.

    Args:
        sae: any module with the SAE contract (``encode``, ``decode``, ``W_dec``, ``b_dec``,
            ``hook_acts``).
        use_error_term: add the SAE's reconstruction error back (see the module doc), so that
            only latent edits change the activation downstream.
    """

    def __init__(self, sae: nn.Module, use_error_term: bool = False) -> None:
        self.sae = sae
        self.use_error_term = use_error_term
        self._leading_shape: torch.Size | None = None
        self._clean_acts: Tensor | None = None
        self._handles: list[Any] = []
        self._added_error_point = False

    def __enter__(self) -> SAESplice:
        try:
            if self.use_error_term:
                if not isinstance(getattr(self.sae, "hook_error", None), HookPoint):
                    self.sae.add_module("hook_error", HookPoint())
                    self._added_error_point = True
                handle = self.sae.hook_acts.register_forward_hook(
                    self._record_clean_acts, prepend=True
                )
                self._handles.append(handle)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Remove every hook this splice added, and ``hook_error`` when it added that."""
        while self._handles:
            self._handles.pop().remove()
        if self._added_error_point:
            del self.sae.hook_error
            self._added_error_point = False

    def hook_points(self) -> dict[str, HookPoint]:
        """Return the SAE's hook points by host-side name (``hook_sae_acts``, ...), in order."""
        return {
            sae_point_name(name): module
            for name, module in self.sae.named_children()
            if isinstance(module, HookPoint)
        }

    def relay_to(self, relay: Relay) -> None:
        """Pass every value at the SAE's hook points through ``relay`` until the splice ends."""
        for name, point in self.hook_points().items():
            handle = point.register_forward_hook(partial(self._relay, name, relay))
            self._handles.append(handle)

    def _relay(
        self, name: str, relay: Relay, module: nn.Module, inputs: Any, output: Tensor
    ) -> Tensor | None:
        leading = self._leading_shape
        if leading is None or output.shape[0] != math.prod(leading):
            return relay(name, output)  # an SAE call outside this splice, or not per token
        result = relay(name, output.reshape(*leading, *output.shape[1:]))  # [B, T, ...]
        return None if result is None else result.reshape(output.shape)

    def _record_clean_acts(self, module: nn.Module, inputs: Any, acts: Tensor) -> None:
        self._clean_acts = acts  # [n, d_sae], before any latent edit

    def __call__(self, activation: Tensor) -> Tensor:
        """Return the replacement of ``activation`` ``[B, T, d_in]``, in its dtype and device."""
        sae = self.sae
        self._leading_shape = activation.shape[:-1]
        try:
            x = activation.to(sae.b_dec.device, sae.cfg.torch_dtype)  # [B, T, d_in]
            acts = sae.encode(x)  # [B, T, d_sae], after any latent edit
            if self.use_error_term:
                change = self._edit_effect(x, acts)
                if change is None:
                    return activation
                return activation + change.to(activation.device, activation.dtype)
            x_hat = sae.decode(acts)  # [B, T, d_in]
        finally:
            self._leading_shape = None
            self._clean_acts = None
        return x_hat.to(activation.device, activation.dtype)

    def _edit_effect(self, x: Tensor, acts: Tensor) -> Tensor | None:
        """Return what latent edits and hooks on ``hook_error`` add to ``x``, in the SAE's dtype.

        Returns None when nothing was edited, so that the caller can pass the original
        activation on unchanged instead of adding an exact zero.
        """
        sae, clean_acts = self.sae, self._clean_acts
        if clean_acts is None:
            raise RuntimeError(
                "the SAE's hook_acts did not fire during encode, so the error term cannot be "
                "computed; splice this SAE with use_error_term=False"
            )
        d_sae, d_in = sae.cfg.d_sae, sae.cfg.d_in
        edits = acts.reshape(-1, d_sae) - clean_acts  # [n, d_sae], zero without edits
        edited = bool(edits.any())
        change = (edits @ sae.W_dec).reshape(x.shape)  # [B, T, d_in]

        x_hat_clean = clean_acts @ sae.W_dec + sae.b_dec  # [n, d_in]
        error = (x.reshape(-1, d_in) - x_hat_clean).reshape(x.shape)  # [B, T, d_in]
        hooked_error = sae.hook_error(error)
        if hooked_error is not error:
            change = change + (hooked_error - error)
            edited = True
        return change if edited else None


# -- latent edits ------------------------------------------------------------------------------


@contextmanager
def edit_latents(sae: nn.Module, edit: Callable[[Tensor], Tensor]) -> Iterator[None]:
    """Replace the SAE's latents ``acts`` ``[n, d_sae]`` by ``edit(acts)`` inside the context.

    The edit is a forward hook on ``sae.hook_acts``, so it applies to every forward pass of the
    SAE in the context, spliced or not, and it is removed on exit, also after an error.
    """
    handle = sae.hook_acts.register_forward_hook(lambda module, inputs, acts: edit(acts))
    try:
        yield
    finally:
        handle.remove()


def _latent_index(sae: nn.Module, latents: int | Sequence[int]) -> Tensor:
    index = torch.as_tensor([latents] if isinstance(latents, int) else list(latents))
    d_sae = sae.cfg.d_sae
    if index.numel() and (index.min() < 0 or index.max() >= d_sae):
        raise ValueError(f"latents {index.tolist()} must lie in 0 .. d_sae - 1 = {d_sae - 1}")
    return index.long()


def ablate_latents(sae: nn.Module, latents: int | Sequence[int]) -> Any:
    """Set the given latents to 0 on every token inside the context."""
    return clamp_latents(sae, latents, 0.0)


def clamp_latents(sae: nn.Module, latents: int | Sequence[int], value: float) -> Any:
    """Set the given latents to ``value`` on every token inside the context."""
    index = _latent_index(sae, latents)

    def clamp(acts: Tensor) -> Tensor:
        acts = acts.clone()
        acts[:, index.to(acts.device)] = value
        return acts

    return edit_latents(sae, clamp)


def steer_latents(sae: nn.Module, latents: int | Sequence[int], scale: float) -> Any:
    """Add ``scale`` to the given latents on every token inside the context.

    Decoded, this adds ``scale * W_dec[j]`` for each latent ``j``: steering along its decoder
    direction, whether the latent fired on the token or not.
    """
    index = _latent_index(sae, latents)

    def steer(acts: Tensor) -> Tensor:
        acts = acts.clone()
        acts[:, index.to(acts.device)] += scale
        return acts

    return edit_latents(sae, steer)


__all__ = [
    "SAE_HOOK_PREFIX",
    "SAESplice",
    "ablate_latents",
    "clamp_latents",
    "edit_latents",
    "sae_point_name",
    "saes_by_hook",
    "steer_latents",
]
