"""The ``Host`` protocol: what the rest of saehooks needs from a language model.

A host runs a model on token ids and exposes its activations by hook name: it harvests them,
splices replacements into them, and returns logits. Adapters (TransformerLens, nnsight) implement
the protocol; nothing outside ``saehooks.hosts`` depends on an adapter's own types.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, NamedTuple, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

Replacement = Callable[[Tensor], Tensor]
"""Maps an activation ``[B, T, d]`` to its replacement of the same shape."""

HookFunction = Callable[[Tensor], "Tensor | None"]
"""Sees an activation and returns its replacement, or None to leave it unchanged."""


class CacheRun(NamedTuple):
    """The output of one forward pass that also cached activations."""

    logits: Tensor
    """Logits ``[B, T, vocab]``."""
    cache: dict[str, Tensor]
    """Activation at each requested hook name, ``[B, T, ...]``, detached."""


@runtime_checkable
class Host(Protocol):
    """A language model whose activations can be read and replaced by hook name.

    Token ids are integer tensors ``[B, T]``. Hosts never add BOS, so the caller puts it at
    position 0 where it wants one.
    """

    model_name: str
    """Name of the model, as recorded in saved SAE configs (a hub name or a folder path)."""
    tokenizer: Any
    """The HF tokenizer. It does not add BOS by itself; see ``bos_token_id``."""
    bos_token_id: int
    """The token id the token stream puts at position 0 of every context."""
    d_model: int
    """Width of the residual stream."""
    n_layers: int
    """Number of transformer blocks."""

    def resolve_hook(self, name: str) -> str:
        """Return the canonical spelling of hook ``name``.

        Raises:
            ValueError: ``name`` is not a hook of this host. The message lists the closest
                valid names and points to ``hook_names()`` for the full list.
        """
        ...

    def hook_names(self) -> list[str]:
        """Return every hook name this host can harvest or splice, in model order."""
        ...

    def harvest(self, tokens: Tensor, hook_names: Sequence[str]) -> dict[str, Tensor]:
        """Return the activations ``[B, T, d]`` at each hook for ``tokens`` ``[B, T]``.

        The forward pass runs under ``torch.inference_mode()`` and stops after the deepest
        hooked layer. The returned tensors are ordinary tensors (not inference tensors), so
        they can feed a training step directly. Keys are the names as given.
        """
        ...

    def logits(self, tokens: Tensor) -> Tensor:
        """Return the logits ``[B, T, vocab]`` of a full forward pass without gradients,
        with every active splice applied."""
        ...

    def splice(
        self, replacements: Mapping[str, Replacement], skip_bos: bool = True
    ) -> AbstractContextManager[Host]:
        """Replace activations at the named hooks for every forward pass inside the context.

        At each hook, ``fn`` receives the whole activation ``a`` ``[B, T, d]`` and its result
        replaces ``a``. With ``skip_bos=True`` position 0 keeps its clean activation (BOS
        activations are much larger than the others, and an SAE is not trained on them).
        Every hook the splice added is removed on exit, also when the body or a replacement
        raises; hooks registered by others stay.
        """
        ...

    def splice_saes(
        self,
        saes: Mapping[str, Any] | Sequence[Any],
        use_error_term: bool = False,
        skip_bos: bool = True,
    ) -> AbstractContextManager[Host]:
        """Splice SAEs in at their hooks for every forward pass inside the context.

        ``saes`` maps hook names to SAEs, or lists SAEs that name their hook in
        ``cfg.hook_name``. Inside the context, the SAEs' own hook points are hook names of this
        host too, ``<hook>.hook_sae_<point>`` (see ``saehooks.hosts.sae_splice``), which
        ``run_with_cache`` and ``run_with_hooks`` accept. With ``use_error_term`` the host sees
        the original activation plus the effect of latent edits.
        """
        ...

    def run_with_cache(self, tokens: Tensor, hook_names: Sequence[str]) -> CacheRun:
        """Run a full forward pass without gradients, caching the activations at the hooks.

        Spliced SAEs' hook points may be among ``hook_names``, and they are cached in the same
        forward pass as the host's own activations.
        """
        ...

    def run_with_hooks(self, tokens: Tensor, hooks: Sequence[tuple[str, HookFunction]]) -> Tensor:
        """Return the logits ``[B, T, vocab]`` of a forward pass with ``hooks`` applied.

        Each hook sees the activation at its name, a host hook or a spliced SAE's hook point,
        and may return a replacement. Every hook is removed when the call returns or raises.
        """
        ...


def unknown_hook_error(name: str, valid_names: Sequence[str], model_name: str) -> ValueError:
    """Build the error for a hook name that ``valid_names`` lacks, with the closest matches."""
    closest = difflib.get_close_matches(name, valid_names, n=5, cutoff=0.5)
    if closest:
        hint = "closest valid names: " + ", ".join(closest)
    else:
        hint = "no valid name is close to it"
    return ValueError(
        f"unknown hook name {name!r} for {model_name}; {hint}. "
        f"host.hook_names() or the command 'saehooks hooks {model_name}' lists all "
        f"{len(valid_names)} valid names."
    )


def trainable_hook_names(host: Host) -> list[str]:
    """Return the hook names of ``host`` whose activation is ``[batch, position, d]`` with d > 1.

    An SAE trains on one vector per token, so the other hooks cannot be trained on. These are
    attention patterns and scores (``[B, heads, T, T]``), per-head values such as
    ``attn.hook_z`` (``[B, T, heads, d_head]``), token ids and norm scales (``[B, T, 1]``).
    Hooks that do not fire in a forward pass are left out as well, and so are rotary
    ``hook_cos`` and ``hook_sin``, which have the shape but depend only on the position, not
    the text. The shapes come from one forward pass on three tokens.
    """
    names = host.hook_names()
    positions = 3
    tokens = torch.full((1, positions), host.bos_token_id, dtype=torch.long)
    shapes: dict[str, torch.Size] = {}

    def record_shape(name: str) -> HookFunction:
        def record(value: Tensor) -> None:
            if isinstance(value, Tensor) and value.is_floating_point():
                shapes[name] = value.shape

        return record

    host.run_with_hooks(tokens, [(name, record_shape(name)) for name in names])
    return [
        name
        for name in names
        if name in shapes
        and not name.endswith(("hook_cos", "hook_sin"))
        and len(shapes[name]) == 3
        and shapes[name][:2] == (1, positions)
        and shapes[name][2] > 1
    ]


def check_tokens(tokens: Tensor) -> Tensor:
    """Check that ``tokens`` are integer token ids ``[B, T]`` and return them as int64.

    Raises:
        TypeError: ``tokens`` is not an integer tensor (a string, for example).
        ValueError: ``tokens`` does not have two dimensions or has no positions.
    """
    integer_dtypes = (torch.int64, torch.int32, torch.int16, torch.uint8)
    if not isinstance(tokens, Tensor) or tokens.dtype not in integer_dtypes:
        raise TypeError(
            f"tokens must be an integer tensor of token ids [B, T], got {type(tokens).__name__}"
            + (f" of dtype {tokens.dtype}" if isinstance(tokens, Tensor) else "")
            + "; tokenize first and put BOS at position 0 yourself"
        )
    if tokens.ndim != 2 or tokens.shape[1] == 0:
        raise ValueError(
            f"tokens must have shape [B, T] with T >= 1, got {tuple(tokens.shape)}; "
            "use tokens[None] for a single sequence"
        )
    return tokens.long()


def apply_replacement(replacement: Replacement, activation: Tensor, skip_bos: bool) -> Tensor:
    """Run a splice replacement on ``activation`` and return the result in its dtype and device.

    A replacement that is a module with floating-point parameters (an SAE, for example)
    receives the activation cast to the dtype and device of its first such parameter, so a
    float16 SAE can replace a float32 activation. Other callables receive it unchanged.
    """
    parameter = None
    if isinstance(replacement, nn.Module):
        floating = (p for p in replacement.parameters() if p.is_floating_point())
        parameter = next(floating, None)
    if parameter is None:
        replaced = replacement(activation)
    else:
        replaced = replacement(activation.to(parameter.device, parameter.dtype))
    return splice_positions(activation, replaced, skip_bos)


def splice_positions(clean: Tensor, replaced: Tensor, skip_bos: bool) -> Tensor:
    """Return ``replaced`` in ``clean``'s dtype and device, with position 0 taken from
    ``clean`` when ``skip_bos`` is set.

    Raises:
        ValueError: ``replaced`` is not a tensor of the same shape as ``clean``.
    """
    if not isinstance(replaced, Tensor) or replaced.shape != clean.shape:
        got = tuple(replaced.shape) if isinstance(replaced, Tensor) else type(replaced).__name__
        raise ValueError(
            f"a splice replacement must return a tensor of the activation's shape "
            f"{tuple(clean.shape)}, got {got}"
        )
    replaced = replaced.to(clean.device, clean.dtype)
    if not skip_bos:
        return replaced
    return torch.cat([clean[:, :1], replaced[:, 1:]], dim=1)  # [B, T, ...]


__all__ = [
    "CacheRun",
    "Host",
    "HookFunction",
    "Replacement",
    "apply_replacement",
    "check_tokens",
    "splice_positions",
    "trainable_hook_names",
    "unknown_hook_error",
]
