"""A ``Host`` built on nnsight 0.8's ``TransformersModel`` around an HF causal LM.

Hook names are TransformerLens's, for the four activations that are exactly the input or the
output of an HF module of a Llama-style decoder (``model.model.layers[i]`` with ``self_attn`` and
``mlp``), so both hosts give the same tensors:

| hook name | nnsight value |
|---|---|
| ``blocks.{i}.hook_resid_pre`` | ``model.layers[i].input`` (the hidden states entering block i) |
| ``blocks.{i}.hook_attn_out`` | ``model.layers[i].self_attn.output[0]`` (after ``o_proj``) |
| ``blocks.{i}.hook_mlp_out`` | ``model.layers[i].mlp.output`` |
| ``blocks.{i}.hook_resid_post`` | ``model.layers[i].output`` |

Other TransformerLens hooks (``hook_resid_mid``, attention scores, the final norm) are values
inside an HF module's forward, which nnsight cannot reach without its source-level tracing, and
are not offered.

Every forward pass is one ``lm.trace``. Splices and hooks are not registered on the model: each
trace applies the splices active at the time, so nothing can be left on the model after an error.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any, NamedTuple

import nnsight
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

logger = logging.getLogger(__name__)

# The activations of one block in the order the forward pass computes them.
SITE_KINDS = ("hook_resid_pre", "hook_attn_out", "hook_mlp_out", "hook_resid_post")


class _Site(NamedTuple):
    """The location of a hook name's activation: block ``layer``, one of ``SITE_KINDS``."""

    layer: int
    kind: str


class NNsightHost:
    """A host whose forward passes are nnsight traces of an HF causal LM.

    Args:
        model: a loaded Llama-style HF causal LM (``model.model.layers``).
        tokenizer: its HF tokenizer. Like every host, this one never adds BOS.
        model_name: the name recorded in saved SAE configs.
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
        layers = getattr(getattr(model, "model", None), "layers", None)
        if not isinstance(layers, nn.ModuleList):
            raise ValueError(
                f"{type(model).__name__} has no model.layers list of decoder blocks; the nnsight "
                "host supports Llama-style models, so use backend='transformer_lens'"
            )
        self.model_name = model_name
        self.tokenizer = tokenizer
        self.bos_token_id = int(bos_token_id)
        self.activation_dtype = activation_dtype
        self.model = model
        self.lm = nnsight.TransformersModel(model, tokenizer=tokenizer)
        self.d_model = int(model.config.hidden_size)
        self.n_layers = len(layers)
        self._sites = {
            f"blocks.{layer}.{kind}": _Site(layer, kind)
            for layer in range(self.n_layers)
            for kind in SITE_KINDS
        }
        # Splices active now, in the order they were entered: (hook name, replacement, skip_bos).
        self._splices: list[tuple[str, Replacement, bool]] = []
        # Hooks on spliced SAEs' hook points, by host name, while a splice_saes context is open.
        self._sae_hooks: dict[str, list[HookFunction]] = {}

    @classmethod
    def load(
        cls,
        name_or_path: str = DEFAULT_MODEL,
        dtype: torch.dtype = torch.float32,
        activation_dtype: torch.dtype | None = None,
    ) -> NNsightHost:
        """Load a model in ``dtype`` with :func:`load_hf_model` and wrap it for nnsight."""
        model, tokenizer = load_hf_model(name_or_path, dtype=dtype)
        return cls(model, tokenizer, model_label(name_or_path), activation_dtype)

    # -- hook names ----------------------------------------------------------------------------

    def hook_names(self) -> list[str]:
        return list(self._sites)

    def resolve_hook(self, name: str) -> str:
        """Return ``name`` when it is one of ``hook_names()``."""
        if name in self._sites:
            return name
        raise unknown_hook_error(name, list(self._sites), self.model_name)

    def _resolve_any_hook(self, name: str) -> str:
        if name in self._sites or name in self._sae_hooks:
            return name
        raise unknown_hook_error(name, [*self._sites, *self._sae_hooks], self.model_name)

    def _site_order(self, name: str) -> tuple[int, int]:
        site = self._sites[name]
        return site.layer, SITE_KINDS.index(site.kind)

    # -- one traced forward pass ---------------------------------------------------------------

    def _trace(
        self, tokens: Tensor, visits: dict[str, list[HookFunction]], full: bool
    ) -> Tensor | None:
        """Run one trace applying ``visits`` at their sites in model order.

        With ``full`` the pass runs to the end and the logits ``[B, T, vocab]`` are returned.
        Without it the pass stops after the deepest visited site and None is returned.
        """
        order = sorted(visits, key=self._site_order)
        logits = None
        with self.lm.trace(tokens) as tracer:
            for name in order:
                self._visit(self._sites[name], visits[name])
            if full:
                logits = nnsight.save(self.lm.output.logits)
            else:
                tracer.stop()
        return logits

    def _visit(self, site: _Site, functions: list[HookFunction]) -> None:
        """Pass the activation at ``site`` through ``functions``, writing back any change."""
        block = self.lm.model.layers[site.layer]
        if site.kind == "hook_resid_pre":
            value = block.input
        elif site.kind == "hook_attn_out":
            attention_output = block.self_attn.output
            value = attention_output[0]
        elif site.kind == "hook_mlp_out":
            value = block.mlp.output
        else:
            value = block.output

        # nnsight may run this body in another thread, where the caller's grad mode is unset.
        with torch.no_grad():
            new_value = value
            for function in functions:
                result = function(new_value)
                new_value = new_value if result is None else result
        if new_value is value:
            return
        if site.kind == "hook_resid_pre":
            block.input = new_value
        elif site.kind == "hook_attn_out":
            block.self_attn.output = (new_value, *attention_output[1:])
        elif site.kind == "hook_mlp_out":
            block.mlp.output = new_value
        else:
            block.output = new_value

    def _splice_visits(self) -> dict[str, list[HookFunction]]:
        visits: dict[str, list[HookFunction]] = {}
        for name, replacement, skip_bos in self._splices:
            visits.setdefault(name, []).append(_SpliceFunction(replacement, skip_bos))
        return visits

    # -- the Host protocol ---------------------------------------------------------------------

    def harvest(self, tokens: Tensor, hook_names: Sequence[str]) -> dict[str, Tensor]:
        """Return the activations at ``hook_names`` for ``tokens`` ``[B, T]``.

        The trace stops after the deepest hooked site, with ``tracer.stop()``. It runs under
        ``torch.no_grad()``, so the tensors are ordinary ones that need no copy, except into
        ``activation_dtype`` when that is set.

        Raises:
            ValueError: ``hook_names`` is empty or contains an unknown name.
        """
        names = [self.resolve_hook(name) for name in hook_names]
        if not names:
            raise ValueError("harvest needs at least one hook name")
        tokens = check_tokens(tokens).to(self.model.device)
        saved: dict[str, Tensor] = {}
        visits = self._splice_visits()
        for name in dict.fromkeys(names):
            visits.setdefault(name, []).append(_Saver(saved, name))
        with torch.no_grad():
            self._trace(tokens, visits, full=False)
        return {name: saved[name].to(dtype=self.activation_dtype) for name in names}

    def logits(self, tokens: Tensor) -> Tensor:
        """Return the logits ``[B, T, vocab]`` of a full forward pass without gradients."""
        tokens = check_tokens(tokens).to(self.model.device)
        with torch.no_grad():
            logits = self._trace(tokens, self._splice_visits(), full=True)
        assert logits is not None  # a full trace always saves the logits
        return logits

    @contextmanager
    def splice(
        self, replacements: Mapping[str, Replacement], skip_bos: bool = True
    ) -> Iterator[NNsightHost]:
        """Replace the activations at the named hooks inside the context (see ``Host.splice``)."""
        entries = [
            (self.resolve_hook(name), replacement, skip_bos)
            for name, replacement in replacements.items()
        ]
        if len({name for name, _, _ in entries}) != len(entries):
            raise ValueError(f"hook names {list(replacements)} name one site twice")
        self._splices.extend(entries)
        try:
            yield self
        finally:
            for entry in entries:
                self._splices.remove(entry)

    @contextmanager
    def splice_saes(
        self,
        saes: Mapping[str, nn.Module] | Sequence[nn.Module],
        use_error_term: bool = False,
        skip_bos: bool = True,
    ) -> Iterator[NNsightHost]:
        """Splice SAEs in at their hooks inside the context (see ``Host.splice_saes``).

        The SAEs' hook points are reachable as ``<hook>.hook_sae_<point>`` through
        ``run_with_cache`` and ``run_with_hooks``, which run them inside the same trace.
        """
        with ExitStack() as stack:
            replacements: dict[str, Replacement] = {}
            for name, sae in saes_by_hook(saes).items():
                self.resolve_hook(name)
                splice = stack.enter_context(SAESplice(sae, use_error_term))
                for point in splice.hook_points():
                    full_name = f"{name}.{point}"
                    if full_name in self._sae_hooks:
                        raise ValueError(f"an SAE is already spliced at {name!r}")
                    self._sae_hooks[full_name] = []
                    stack.callback(self._sae_hooks.pop, full_name, None)
                splice.relay_to(_RelayToHooks(name, self._sae_hooks))
                replacements[name] = splice
            stack.enter_context(self.splice(replacements, skip_bos=skip_bos))
            yield self

    def run_with_cache(self, tokens: Tensor, hook_names: Sequence[str]) -> CacheRun:
        """Cache host and spliced-SAE activations in one trace (see ``Host``)."""
        names = list(dict.fromkeys(self._resolve_any_hook(name) for name in hook_names))
        saved: dict[str, Tensor] = {}
        hooks = [(name, _Saver(saved, name)) for name in names]
        logits = self.run_with_hooks(tokens, hooks)
        missing = [name for name in names if name not in saved]
        if missing:
            raise RuntimeError(f"hooks {missing} did not fire in a forward pass")
        return CacheRun(logits, {name: saved[name] for name in names})

    def run_with_hooks(self, tokens: Tensor, hooks: Sequence[tuple[str, HookFunction]]) -> Tensor:
        """Return the logits of a trace with ``hooks`` applied (see ``Host``)."""
        resolved = [(self._resolve_any_hook(name), function) for name, function in hooks]
        tokens = check_tokens(tokens).to(self.model.device)
        visits = self._splice_visits()
        sae_hooks_added: list[tuple[str, HookFunction]] = []
        try:
            for name, function in resolved:
                if name in self._sites:
                    visits.setdefault(name, []).append(function)
                else:
                    self._sae_hooks[name].append(function)
                    sae_hooks_added.append((name, function))
            with torch.no_grad():
                logits = self._trace(tokens, visits, full=True)
        finally:
            for name, function in sae_hooks_added:
                if name in self._sae_hooks:
                    self._sae_hooks[name].remove(function)
        assert logits is not None  # a full trace always saves the logits
        return logits


class _SpliceFunction:
    """Applies a splice replacement, keeping position 0 clean when ``skip_bos`` is set."""

    def __init__(self, replacement: Replacement, skip_bos: bool) -> None:
        self.replacement = replacement
        self.skip_bos = skip_bos

    def __call__(self, activation: Tensor) -> Tensor:
        return apply_replacement(self.replacement, activation, self.skip_bos)


class _Saver:
    """Stores the value it receives under ``name`` and leaves it unchanged."""

    def __init__(self, saved: dict[str, Tensor], name: str) -> None:
        self.saved = saved
        self.name = name

    def __call__(self, value: Tensor) -> None:
        self.saved[self.name] = nnsight.save(value.detach())


class _RelayToHooks:
    """Runs a value from an SAE hook point through the host's hooks registered for it."""

    def __init__(self, hook_name: str, hooks: dict[str, list[HookFunction]]) -> None:
        self.hook_name = hook_name
        self.hooks = hooks

    def __call__(self, point_name: str, value: Tensor) -> Tensor:
        for function in self.hooks.get(f"{self.hook_name}.{point_name}", []):
            result = function(value)
            value = value if result is None else result
        return value
