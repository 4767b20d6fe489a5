"""TransformerLensHost on a tiny seeded Llama, checked against an independent HF copy."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models
from torch import Tensor, nn
from transformers import PreTrainedTokenizerFast

from saehooks.hosts import Host, TransformerLensHost, load_hf_model

TINY_LAYERS = 4  # as built by save_tiny_llama in conftest.py
MIDDLE = "blocks.1.hook_resid_post"


def hook_counts(host: TransformerLensHost) -> dict[str, tuple[int, ...]]:
    """Count torch and TransformerLens hooks on every module of the bridge and the HF model."""
    modules = dict(host.bridge.named_modules())
    modules.update({f"hf.{n}": m for n, m in host.bridge.original_model.named_modules()})
    return {
        name: (
            len(module._forward_hooks),
            len(module._forward_pre_hooks),
            len(module._backward_hooks),
            len(getattr(module, "fwd_hooks", [])),
            len(getattr(module, "bwd_hooks", [])),
        )
        for name, module in modules.items()
    }


def reference_logits(
    model: nn.Module, tokens: Tensor, replacements: dict[int, Callable[[Tensor], Tensor]]
) -> Tensor:
    """Run the HF model with the output of decoder layer i replaced at positions 1: by fn(out)."""

    def replace_after_bos(fn: Callable[[Tensor], Tensor]):
        def hook(module: nn.Module, inputs: tuple, output: Tensor | tuple) -> Tensor | tuple:
            hidden = output[0] if isinstance(output, tuple) else output
            replaced = torch.cat([hidden[:, :1], fn(hidden)[:, 1:]], dim=1)
            return (replaced, *output[1:]) if isinstance(output, tuple) else replaced

        return hook

    handles = [
        model.model.layers[layer].register_forward_hook(replace_after_bos(fn))
        for layer, fn in replacements.items()
    ]
    try:
        with torch.no_grad():
            return model(tokens).logits
    finally:
        for handle in handles:
            handle.remove()


def test_host_satisfies_protocol(tiny_host: TransformerLensHost) -> None:
    assert isinstance(tiny_host, Host)
    assert tiny_host.d_model == 32
    assert tiny_host.n_layers == TINY_LAYERS
    assert tiny_host.bos_token_id == 1


def test_harvest_matches_hf_hidden_states(
    tiny_host: TransformerLensHost, reference_model: nn.Module, tiny_tokens: Tensor
) -> None:
    names = ["blocks.0.hook_resid_post", MIDDLE, "blocks.2.hook_resid_pre"]
    acts = tiny_host.harvest(tiny_tokens, names)
    with torch.no_grad():
        hidden_states = reference_model(tiny_tokens, output_hidden_states=True).hidden_states

    assert list(acts) == names
    torch.testing.assert_close(acts["blocks.0.hook_resid_post"], hidden_states[1])
    torch.testing.assert_close(acts[MIDDLE], hidden_states[2])
    torch.testing.assert_close(acts["blocks.2.hook_resid_pre"], hidden_states[2])


def test_harvest_stops_after_deepest_hook(
    tiny_host: TransformerLensHost, tiny_tokens: Tensor
) -> None:
    calls = {layer: 0 for layer in range(TINY_LAYERS)}

    def count(layer: int):
        def hook(module: nn.Module, inputs: tuple, output: object) -> None:
            calls[layer] += 1

        return hook

    handles = [
        block.register_forward_hook(count(layer))
        for layer, block in enumerate(tiny_host.bridge.blocks)
    ]
    try:
        tiny_host.harvest(tiny_tokens, [MIDDLE])
    finally:
        for handle in handles:
            handle.remove()

    assert calls == {0: 1, 1: 1, 2: 0, 3: 0}


def test_harvest_embedding_runs_no_block(
    tiny_host: TransformerLensHost, reference_model: nn.Module, tiny_tokens: Tensor
) -> None:
    calls = []
    handle = tiny_host.bridge.blocks[0].register_forward_hook(lambda *args: calls.append(1))
    try:
        acts = tiny_host.harvest(tiny_tokens, ["hook_embed"])
    finally:
        handle.remove()

    assert calls == []
    with torch.no_grad():
        expected = reference_model.model.embed_tokens(tiny_tokens)
    torch.testing.assert_close(acts["hook_embed"], expected)


def test_harvest_tensors_are_trainable(tiny_host: TransformerLensHost, tiny_tokens: Tensor) -> None:
    acts = tiny_host.harvest(tiny_tokens, [MIDDLE])[MIDDLE]
    weight = torch.ones(32, requires_grad=True)

    assert not acts.is_inference()
    (acts * weight).sum().backward()
    torch.testing.assert_close(weight.grad, acts.sum(dim=(0, 1)))


def test_unknown_hook_lists_closest_name(tiny_host: TransformerLensHost) -> None:
    with pytest.raises(ValueError, match="blocks.1.hook_resid_post") as raised:
        tiny_host.resolve_hook("blocks.1.hook_resid_pots")
    assert "hook_names()" in str(raised.value)
    with pytest.raises(ValueError, match="unknown hook name"):
        tiny_host.harvest(torch.ones(1, 3, dtype=torch.long), ["blocks.9.hook_resid_post"])


def test_hook_names_resolve_to_themselves(tiny_host: TransformerLensHost) -> None:
    names = tiny_host.hook_names()

    assert MIDDLE in names
    assert "blocks.1.hook_out" in names
    assert all(tiny_host.resolve_hook(name) == name for name in names)


def test_tokens_must_be_ids(tiny_host: TransformerLensHost) -> None:
    with pytest.raises(TypeError, match="token ids"):
        tiny_host.logits("w1 w2")  # type: ignore[arg-type]  # a string is the case under test
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        tiny_host.logits(torch.tensor([1, 4, 5]))


def test_identity_splice_keeps_logits(tiny_host: TransformerLensHost, tiny_tokens: Tensor) -> None:
    clean = tiny_host.logits(tiny_tokens)
    with tiny_host.splice({MIDDLE: lambda a: a.clone()}):
        spliced = tiny_host.logits(tiny_tokens)

    assert torch.equal(spliced, clean)


def test_zero_splice_keeps_bos_position(
    tiny_host: TransformerLensHost, reference_model: nn.Module, tiny_tokens: Tensor
) -> None:
    clean = tiny_host.logits(tiny_tokens)
    with tiny_host.splice({MIDDLE: torch.zeros_like}):
        spliced = tiny_host.logits(tiny_tokens)

    assert torch.equal(spliced[:, 0], clean[:, 0])
    assert (spliced[:, 1:] - clean[:, 1:]).abs().amin(dim=-1).gt(0).all()
    torch.testing.assert_close(
        spliced, reference_logits(reference_model, tiny_tokens, {1: torch.zeros_like})
    )


def test_splice_without_skip_bos_changes_bos(
    tiny_host: TransformerLensHost, tiny_tokens: Tensor
) -> None:
    clean = tiny_host.logits(tiny_tokens)
    with tiny_host.splice({MIDDLE: torch.zeros_like}, skip_bos=False):
        spliced = tiny_host.logits(tiny_tokens)

    assert not torch.allclose(spliced[:, 0], clean[:, 0])


def test_splice_passes_whole_activation(
    tiny_host: TransformerLensHost, tiny_tokens: Tensor
) -> None:
    seen: list[Tensor] = []

    def capture(a: Tensor) -> Tensor:
        seen.append(a.detach().clone())
        return a

    with tiny_host.splice({MIDDLE: capture}):
        tiny_host.logits(tiny_tokens)

    assert len(seen) == 1
    torch.testing.assert_close(seen[0], tiny_host.harvest(tiny_tokens, [MIDDLE])[MIDDLE])


def test_splice_several_hooks(
    tiny_host: TransformerLensHost, reference_model: nn.Module, tiny_tokens: Tensor
) -> None:
    def halve(a: Tensor) -> Tensor:
        return a * 0.5

    def negate(a: Tensor) -> Tensor:
        return -a

    with tiny_host.splice({"blocks.0.hook_resid_post": halve, "blocks.2.hook_out": negate}):
        spliced = tiny_host.logits(tiny_tokens)

    expected = reference_logits(reference_model, tiny_tokens, {0: halve, 2: negate})
    torch.testing.assert_close(spliced, expected)


def test_splice_error_in_body_removes_hooks(
    tiny_host: TransformerLensHost, tiny_tokens: Tensor
) -> None:
    baseline = tiny_host.logits(tiny_tokens)
    before = hook_counts(tiny_host)

    with pytest.raises(KeyError, match="raised inside the body"):
        with tiny_host.splice({MIDDLE: torch.zeros_like, "blocks.2.hook_resid_post": torch.neg}):
            assert hook_counts(tiny_host) != before
            raise KeyError("raised inside the body")

    assert hook_counts(tiny_host) == before
    assert torch.equal(tiny_host.logits(tiny_tokens), baseline)


def test_splice_error_in_replacement_removes_hooks(
    tiny_host: TransformerLensHost, tiny_tokens: Tensor
) -> None:
    baseline = tiny_host.logits(tiny_tokens)
    before = hook_counts(tiny_host)

    def broken(a: Tensor) -> Tensor:
        raise ArithmeticError("raised inside the replacement")

    with pytest.raises(ArithmeticError, match="inside the replacement"):
        with tiny_host.splice({"blocks.0.hook_resid_post": torch.neg, MIDDLE: broken}):
            tiny_host.logits(tiny_tokens)

    assert hook_counts(tiny_host) == before
    assert torch.equal(tiny_host.logits(tiny_tokens), baseline)


def test_splice_wrong_shape_raises_and_cleans_up(
    tiny_host: TransformerLensHost, tiny_tokens: Tensor
) -> None:
    before = hook_counts(tiny_host)

    with pytest.raises(ValueError, match=r"activation's shape \(3, 9, 32\)"):
        with tiny_host.splice({MIDDLE: lambda a: a[:, :, :4]}):
            tiny_host.logits(tiny_tokens)

    assert hook_counts(tiny_host) == before


def test_splice_keeps_user_hooks(tiny_host: TransformerLensHost, tiny_tokens: Tensor) -> None:
    torch_calls: list[int] = []
    lens_calls: list[int] = []
    handle = tiny_host.bridge.blocks[2].register_forward_hook(lambda *args: torch_calls.append(1))
    tiny_host.bridge.add_hook("blocks.3.hook_resid_post", lambda a, hook: lens_calls.append(1))
    try:
        before = hook_counts(tiny_host)
        with pytest.raises(RuntimeError, match="stop"):
            with tiny_host.splice({MIDDLE: torch.zeros_like}):
                tiny_host.logits(tiny_tokens)
                raise RuntimeError("stop")

        assert hook_counts(tiny_host) == before
        tiny_host.logits(tiny_tokens)
        assert torch_calls == [1, 1]
        assert lens_calls == [1, 1]
    finally:
        handle.remove()
        tiny_host.bridge.reset_hooks()


def test_splice_rejects_alias_twice(tiny_host: TransformerLensHost) -> None:
    before = hook_counts(tiny_host)
    with pytest.raises(ValueError, match="same hook point"):
        with tiny_host.splice({MIDDLE: torch.neg, "blocks.1.hook_out": torch.neg}):
            pass
    assert hook_counts(tiny_host) == before


def test_splice_rejects_skip_bos_on_pattern(tiny_host: TransformerLensHost) -> None:
    with pytest.raises(ValueError, match="skip_bos=False"):
        with tiny_host.splice({"blocks.1.attn.hook_pattern": torch.neg}):
            pass


def test_in_memory_tokenizer_rejected(tiny_model_dir: Path) -> None:
    model, _ = load_hf_model(str(tiny_model_dir))
    backend = Tokenizer(models.WordLevel({"<unk>": 0, "<bos>": 1}, "<unk>"))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<bos>", unk_token="<unk>"
    )

    with pytest.raises(ValueError, match="save_pretrained"):
        TransformerLensHost(model, tokenizer, "tiny")
