"""A ``Host`` on the ``TransformerBridge`` of TransformerLens 3.x or 4.x around an HF causal LM.

Hook names are TransformerLens's own (``blocks.6.hook_resid_post``), aliases included. The bridge
wraps the HF model in place: its submodules become bridge components, and its attention switches
to the eager implementation, so a model handed to this host should not be used elsewhere.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from saehooks.hosts.base import (
    CacheRun,
    HookFunction,
    Replacement,
    apply_replacement,
    check_tokens,
    unknown_hook_error,
)
from saehooks.hosts.loading import DEFAULT_MODEL, load_hf_model, model_label
from saehooks.hosts.sae_splice import SAESplice, saes_by_hook
from saehooks.hosts.transformer_lens_compat import (
    HookPoint,
    TransformerBridge,
    check_hook_can_fire,
)

logger = logging.getLogger(__name__)

# Hooks that fire before block 0, so a harvest of only these can stop at block 0.
_EMBEDDING_STAGE_PREFIXES = ("embed.", "hook_embed", "hook_tokens")

# Hooks whose activation does not have positions on axis 1 ([B, heads, query, key]).
_NON_POSITION_AXIS_SUFFIXES = ("hook_pattern", "hook_attn_scores")


class _SpliceHook:
    """A TransformerLens forward hook that replaces the activation with ``replacement(a)``."""

    def __init__(self, name: str, replacement: Replacement, skip_bos: bool) -> None:
        self.name = name
        self.replacement = replacement
        self.skip_bos = skip_bos

    def __call__(self, activation: Tensor, *, hook: HookPoint) -> Tensor:
        return apply_replacement(self.replacement, activation, self.skip_bos)  # [B, T, d]

    def __repr__(self) -> str:
        return f"saehooks splice at {self.name}"


class TransformerLensHost:
    """A host whose hook points come from a TransformerLens ``TransformerBridge``.

    Args:
        model: a loaded HF causal LM. The bridge modifies it in place (see the module doc).
        tokenizer: its HF tokenizer. The host keeps this one, which does not add BOS; the
            bridge keeps a BOS-adding copy of its own that the host never uses.
        model_name: the name recorded in saved SAE configs and in the bridge's config.
        activation_dtype: dtype of the activations ``harvest`` returns, for example float32
            from a bfloat16 model; None keeps the model's dtype.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        model_name: str,
        activation_dtype: torch.dtype | None = None,
    ) -> None:
        bos_token_id = getattr(tokenizer, "bos_token_id", None)
        if bos_token_id is None:
            raise ValueError(
                f"the tokenizer of {model_name} has no BOS token; set tokenizer.bos_token "
                "to the token that should start every context"
            )
        _check_tokenizer_reloadable(tokenizer)
        device = next(model.parameters()).device
        self.model_name = model_name
        self.tokenizer = tokenizer
        self.bos_token_id = int(bos_token_id)
        self.activation_dtype = activation_dtype
        self.bridge = TransformerBridge.boot_transformers(
            model_name, hf_model=model, tokenizer=tokenizer, device=str(device)
        )
        self.bridge.eval()
        self.d_model = int(self.bridge.cfg.d_model)
        self.n_layers = int(self.bridge.cfg.n_layers)
        self._hook_points = self._usable_hook_points()
        # Hook points of spliced SAEs, by host name, while a splice_saes context is open.
        self._sae_points: dict[str, HookPoint] = {}

    @classmethod
    def load(
        cls,
        name_or_path: str = DEFAULT_MODEL,
        dtype: torch.dtype = torch.float32,
        activation_dtype: torch.dtype | None = None,
    ) -> TransformerLensHost:
        """Load a model in ``dtype`` with :func:`load_hf_model` and wrap it in a bridge."""
        model, tokenizer = load_hf_model(name_or_path, dtype=dtype)
        return cls(model, tokenizer, model_label(name_or_path), activation_dtype)

    def _usable_hook_points(self) -> dict[str, HookPoint]:
        """Map every hook name that can fire on this bridge to its hook point.

        The bridge lists some hooks that stay off until a ``set_use_*`` switch is turned on;
        ``check_hook_can_fire`` raises for those, and they are left out.
        """
        usable: dict[str, HookPoint] = {}
        for name, hook_point in self.bridge.hook_dict.items():
            try:
                check_hook_can_fire(self.bridge, name, hook_point)
            except ValueError:
                continue
            usable[name] = hook_point
        return usable

    def hook_names(self) -> list[str]:
        return list(self._hook_points)

    def resolve_hook(self, name: str) -> str:
        """Return ``name`` itself when it is a hook of this bridge (aliases stay as given)."""
        if name in self._hook_points:
            return name
        raise unknown_hook_error(name, list(self._hook_points), self.model_name)

    def _resolve_any_hook(self, name: str) -> str:
        """Resolve a host hook or a hook point of a spliced SAE."""
        if name in self._hook_points or name in self._sae_points:
            return name
        valid = [*self._hook_points, *self._sae_points]
        raise unknown_hook_error(name, valid, self.model_name)

    def _stop_layer(self, names: Sequence[str]) -> int | None:
        """Return the block index at which a harvest of ``names`` can stop, or None for none."""
        deepest = -1
        for name in names:
            canonical = self._hook_points[name].name or name
            if canonical.startswith(_EMBEDDING_STAGE_PREFIXES):
                continue
            if not canonical.startswith("blocks."):
                return None  # final norm, unembedding or rotary tables: run the whole model
            deepest = max(deepest, int(canonical.split(".")[1]))
        stop = deepest + 1
        return stop if stop < self.n_layers else None

    def harvest(self, tokens: Tensor, hook_names: Sequence[str]) -> dict[str, Tensor]:
        """Return the activations at ``hook_names`` for ``tokens`` ``[B, T]``.

        The forward pass stops at the block after the deepest hooked one. The cached tensors
        are inference tensors, which autograd rejects. Each is therefore copied after inference
        mode ends, into ``activation_dtype`` when that is set.

        Raises:
            ValueError: ``hook_names`` is empty or contains an unknown name.
            RuntimeError: a hook did not fire during the forward pass.
        """
        names = [self.resolve_hook(name) for name in hook_names]
        if not names:
            raise ValueError("harvest needs at least one hook name")
        tokens = check_tokens(tokens).to(self.bridge.cfg.device)
        stop_layer = self._stop_layer(names)

        with torch.inference_mode():
            _, cache = self.bridge.run_with_cache(
                tokens,
                names_filter=list(dict.fromkeys(names)),
                stop_at_layer=stop_layer,
                return_cache_object=False,
            )

        missing = [name for name in names if cache.get(name) is None]
        if missing:
            raise RuntimeError(
                f"hooks {missing} did not fire in a forward pass of {self.model_name} "
                f"stopped at block {stop_layer}"
            )
        dtype = self.activation_dtype
        return {name: cache[name].to(dtype=dtype, copy=True) for name in names}

    def logits(self, tokens: Tensor) -> Tensor:
        """Return the logits ``[B, T, vocab]`` of a full forward pass without gradients."""
        tokens = check_tokens(tokens).to(self.bridge.cfg.device)
        with torch.no_grad():
            return self.bridge(tokens, return_type="logits")  # [B, T, vocab]

    @contextmanager
    def splice(
        self, replacements: Mapping[str, Replacement], skip_bos: bool = True
    ) -> Iterator[TransformerLensHost]:
        """Replace the activations at the named hooks inside the context (see ``Host.splice``).

        Raises:
            ValueError: a hook name is unknown, two names alias the same hook point, or
                ``skip_bos`` is set for a hook whose axis 1 is not the position axis (attention
                patterns and scores).
        """
        hooks = []
        spliced_points: dict[int, str] = {}
        for name, replacement in replacements.items():
            canonical = self.resolve_hook(name)
            hook_point = self._hook_points[canonical]
            if id(hook_point) in spliced_points:
                raise ValueError(
                    f"{name!r} and {spliced_points[id(hook_point)]!r} name the same hook point, "
                    "so splice it under one name only"
                )
            spliced_points[id(hook_point)] = name
            if skip_bos and not _positions_on_axis_1(canonical, hook_point):
                raise ValueError(
                    f"skip_bos=True keeps position 0 on axis 1, but the activation at {name!r} "
                    "has its positions on another axis; pass skip_bos=False"
                )
            hooks.append((canonical, _SpliceHook(canonical, replacement, skip_bos)))

        # The bridge's context manager removes exactly the hooks it added, also on error.
        with self.bridge.hooks(fwd_hooks=hooks):
            yield self

    @contextmanager
    def splice_saes(
        self,
        saes: Mapping[str, nn.Module] | Sequence[nn.Module],
        use_error_term: bool = False,
        skip_bos: bool = True,
    ) -> Iterator[TransformerLensHost]:
        """Splice SAEs in at their hooks inside the context (see ``Host.splice_saes``).

        The SAEs' hook points become TransformerLens hook points of the bridge, named
        ``<hook>.hook_sae_<point>``: ``bridge.run_with_cache``, ``bridge.run_with_hooks`` and
        ``bridge.hooks`` accept those names while the context is open.
        """
        with ExitStack() as stack:
            replacements: dict[str, Replacement] = {}
            for name, sae in saes_by_hook(saes).items():
                self.resolve_hook(name)
                splice = stack.enter_context(SAESplice(sae, use_error_term))
                points = {f"{name}.{point}": HookPoint() for point in splice.hook_points()}
                for full_name, point in points.items():
                    if full_name in self._sae_points:
                        raise ValueError(f"an SAE is already spliced at {name!r}")
                    stack.callback(self._unregister_sae_point, full_name)
                    self._register_sae_point(full_name, point)
                splice.relay_to(_RelayToPoints(name, points))
                replacements[name] = splice
            stack.enter_context(self.splice(replacements, skip_bos=skip_bos))
            yield self

    def _register_sae_point(self, name: str, point: HookPoint) -> None:
        point.name = name
        self._sae_points[name] = point
        self.bridge._hook_registry[name] = point

    def _unregister_sae_point(self, name: str) -> None:
        self._sae_points.pop(name, None)
        self.bridge._hook_registry.pop(name, None)

    def run_with_cache(self, tokens: Tensor, hook_names: Sequence[str]) -> CacheRun:
        """Cache host and spliced-SAE activations in one forward pass (see ``Host``)."""
        names = list(dict.fromkeys(self._resolve_any_hook(name) for name in hook_names))
        tokens = check_tokens(tokens).to(self.bridge.cfg.device)
        with torch.no_grad():
            logits, cache = self.bridge.run_with_cache(
                tokens, names_filter=names, return_cache_object=False
            )
        missing = [name for name in names if cache.get(name) is None]
        if missing:
            raise RuntimeError(f"hooks {missing} did not fire in a forward pass")
        return CacheRun(logits, {name: cache[name] for name in names})

    def run_with_hooks(self, tokens: Tensor, hooks: Sequence[tuple[str, HookFunction]]) -> Tensor:
        """Return the logits of a forward pass with ``hooks`` applied (see ``Host``)."""
        bridge_hooks = [
            (self._resolve_any_hook(name), _adapt_hook(function)) for name, function in hooks
        ]
        tokens = check_tokens(tokens).to(self.bridge.cfg.device)
        with torch.no_grad(), self.bridge.hooks(fwd_hooks=bridge_hooks):
            return self.bridge(tokens, return_type="logits")  # [B, T, vocab]


def _check_tokenizer_reloadable(tokenizer: Any) -> None:
    """Raise a clear error for a tokenizer that ``boot_transformers`` cannot rebuild.

    NOTE: TransformerLens 4.3 rebuilds a tokenizer that does not add BOS by calling
    ``AutoTokenizer.from_pretrained(tokenizer.name_or_path, add_bos_token=True)``, and fails with
    a bare ``KeyError`` when the tokenizer was built in memory and has no ``name_or_path``.
    """
    if tokenizer.bos_token is None or getattr(tokenizer, "add_bos_token", False):
        return
    if not tokenizer.init_kwargs.get("name_or_path"):
        raise ValueError(
            f"the tokenizer {type(tokenizer).__name__} was not loaded from a folder, and the "
            "TransformerLens bridge must reload it; save it with tokenizer.save_pretrained(DIR) "
            "and load it with AutoTokenizer.from_pretrained(DIR)"
        )


class _RelayToPoints:
    """Runs a value from an SAE hook point through the bridge hook point of the same name."""

    def __init__(self, hook_name: str, points: dict[str, HookPoint]) -> None:
        self.hook_name = hook_name
        self.points = points

    def __call__(self, point_name: str, value: Tensor) -> Tensor:
        return self.points[f"{self.hook_name}.{point_name}"](value)


def _adapt_hook(function: HookFunction) -> Any:
    """Wrap a ``HookFunction`` as a TransformerLens hook, which also receives ``hook=``."""

    def bridge_hook(activation: Tensor, *, hook: HookPoint) -> Tensor | None:
        return function(activation)

    return bridge_hook


def _positions_on_axis_1(name: str, hook_point: HookPoint) -> bool:
    if name.endswith(_NON_POSITION_AXIS_SUFFIXES):
        return False
    return getattr(hook_point, "pos_dim", None) in (None, 1)
