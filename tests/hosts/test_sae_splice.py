"""Splicing SAEs into both hosts: error term, latent edits, SAE hook points and hook hygiene."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from saehooks.hosts import Host, NNsightHost, TransformerLensHost
from saehooks.hosts.sae_splice import (
    SAESplice,
    ablate_latents,
    clamp_latents,
    edit_latents,
    steer_latents,
)
from saehooks.sae import COMPOSITE_CONFIGS, SAE_CLASSES, SAEConfig, build_sae

HOOK = "blocks.1.hook_resid_post"
D_MODEL = 32
SITE_KINDS = ("hook_resid_pre", "hook_attn_out", "hook_mlp_out", "hook_resid_post")

# Settings for each architecture on d_in=32; every key of SAE_CLASSES must appear here.
ARCHITECTURE_SETTINGS: dict[str, dict[str, Any]] = {
    "relu": {"d_sae": 64, "k": None},
    "topk": {"d_sae": 64, "k": 4},
    "batchtopk": {"d_sae": 64, "k": 4},
    "matryoshka": {"d_sae": 64, "k": 4, "matryoshka_widths": (16, 64)},
    "jumprelu": {"d_sae": 64, "k": None, "jumprelu_threshold": 0.05},
    "gated": {"d_sae": 64, "k": None},
    "moe": {"d_sae": 64, "n_experts": 4, "experts_per_token": 2, "k": 4},
    "hierarchical": {"d_sae": 72, "child_size": 8, "k": 3, "child_k": 2},
    "deep": {"d_sae": 64, "k": 4},
}


def make_sae(architecture: str, hook_name: str = HOOK) -> nn.Module:
    """A randomly initialised SAE of ``architecture`` with non-zero biases, on ``hook_name``."""
    settings = ARCHITECTURE_SETTINGS[architecture]
    if architecture in COMPOSITE_CONFIGS:
        cfg: Any = COMPOSITE_CONFIGS[architecture](d_in=D_MODEL, hook_name=hook_name, **settings)
    else:
        cfg = SAEConfig(d_in=D_MODEL, architecture=architecture, hook_name=hook_name, **settings)
    sae = build_sae(cfg)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, parameter in sae.named_parameters():
            if name.endswith(("b_enc", "b_dec", "b_gate", "b_mag")) and parameter.requires_grad:
                parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    return sae


@pytest.fixture(scope="module")
def nnsight_host(tiny_model_dir: Path) -> NNsightHost:
    return NNsightHost.load(str(tiny_model_dir))


@pytest.fixture(params=["transformer_lens", "nnsight"])
def host(request: pytest.FixtureRequest, tiny_host: TransformerLensHost, nnsight_host) -> Host:
    return tiny_host if request.param == "transformer_lens" else nnsight_host


@pytest.fixture
def hosts(tiny_host: TransformerLensHost, nnsight_host: NNsightHost) -> dict[str, Host]:
    return {"transformer_lens": tiny_host, "nnsight": nnsight_host}


# Every architecture on the TransformerLens host, and two on nnsight: the splice code that the
# architecture exercises is shared, and the tiny suite must stay fast.
ARCHITECTURE_CASES = [("transformer_lens", architecture) for architecture in sorted(SAE_CLASSES)]
ARCHITECTURE_CASES += [("nnsight", "topk"), ("nnsight", "hierarchical")]


def hook_state(host: Host, saes: list[nn.Module]) -> dict[str, Any]:
    """Every hook that could be left behind: torch hooks on all modules of the host model and
    the SAEs, TransformerLens handles, the bridge's hook registry and the hosts' own tables."""
    modules: dict[str, nn.Module] = {}
    if isinstance(host, TransformerLensHost):
        modules.update(dict(host.bridge.named_modules()))
        modules.update({f"hf.{n}": m for n, m in host.bridge.original_model.named_modules()})
    else:
        modules.update(dict(host.model.named_modules()))
    for index, sae in enumerate(saes):
        modules.update({f"sae{index}.{n}": m for n, m in sae.named_modules()})
    state: dict[str, Any] = {
        name: (
            len(module._forward_hooks),
            len(module._forward_pre_hooks),
            len(getattr(module, "fwd_hooks", [])),
        )
        for name, module in modules.items()
    }
    if isinstance(host, TransformerLensHost):
        state["registry"] = sorted(host.bridge._hook_registry)
        state["sae_points"] = sorted(host._sae_points)
    else:
        state["splices"] = list(host._splices)
        state["sae_hooks"] = dict(host._sae_hooks)
    state["hook_error"] = [hasattr(sae, "hook_error") for sae in saes]
    return state


def test_hosts_agree_on_tiny_llama(
    tiny_host: TransformerLensHost, nnsight_host: NNsightHost, tiny_tokens: Tensor
) -> None:
    names = [f"blocks.{layer}.{kind}" for layer in range(4) for kind in SITE_KINDS]
    tl_acts = tiny_host.harvest(tiny_tokens, names)
    nnsight_acts = nnsight_host.harvest(tiny_tokens, names)
    for name in names:
        torch.testing.assert_close(nnsight_acts[name], tl_acts[name], msg=name)

    sae = make_sae("topk")
    with tiny_host.splice_saes([sae]):
        tl_logits = tiny_host.logits(tiny_tokens)
    with nnsight_host.splice_saes([sae]):
        nnsight_logits = nnsight_host.logits(tiny_tokens)
    torch.testing.assert_close(nnsight_logits, tl_logits)
    assert not torch.allclose(tl_logits, tiny_host.logits(tiny_tokens))


def test_nnsight_harvest_matches_hf(
    nnsight_host: NNsightHost, reference_model: nn.Module, tiny_tokens: Tensor
) -> None:
    acts = nnsight_host.harvest(
        tiny_tokens, ["blocks.2.hook_resid_post", "blocks.0.hook_resid_pre"]
    )
    with torch.no_grad():
        hidden_states = reference_model(tiny_tokens, output_hidden_states=True).hidden_states
    torch.testing.assert_close(acts["blocks.2.hook_resid_post"], hidden_states[3])
    torch.testing.assert_close(acts["blocks.0.hook_resid_pre"], hidden_states[0])
    assert not acts["blocks.2.hook_resid_post"].is_inference()


def test_nnsight_unknown_hook_lists_close_names(nnsight_host: NNsightHost) -> None:
    with pytest.raises(ValueError, match="blocks.1.hook_resid_post"):
        nnsight_host.resolve_hook("blocks.1.hook_resid_pst")
    with pytest.raises(ValueError, match="hook_resid_mid"):
        nnsight_host.resolve_hook("blocks.1.hook_resid_mid")


@pytest.mark.parametrize(("host_name", "architecture"), ARCHITECTURE_CASES)
def test_error_term_without_edits_is_identity(
    hosts: dict[str, Host], tiny_tokens: Tensor, host_name: str, architecture: str
) -> None:
    host, sae = hosts[host_name], make_sae(architecture)
    clean = host.logits(tiny_tokens)
    with host.splice_saes([sae], use_error_term=True):
        spliced = host.logits(tiny_tokens)
    with host.splice_saes([sae]):
        without_error_term = host.logits(tiny_tokens)
    assert torch.equal(spliced, clean)
    assert not torch.allclose(without_error_term, clean)


def test_architecture_table_covers_every_sae() -> None:
    assert sorted(ARCHITECTURE_SETTINGS) == sorted(SAE_CLASSES)


def edit_cases(sae: nn.Module, acts: Tensor, latent: int) -> list[tuple[str, Any, Tensor]]:
    """(name, context, expected change of latent ``latent`` per token ``[B, T]``) for each edit."""
    current = acts[..., latent]  # [B, T]
    return [
        ("steer", steer_latents(sae, latent, 1.5), torch.full_like(current, 1.5)),
        ("ablate", ablate_latents(sae, [latent]), -current),
        ("clamp", clamp_latents(sae, latent, 2.0), 2.0 - current),
    ]


@pytest.mark.parametrize(("host_name", "architecture"), ARCHITECTURE_CASES)
@pytest.mark.parametrize("use_error_term", [True, False])
def test_latent_edit_shifts_by_decoder_row(
    hosts: dict[str, Host],
    tiny_tokens: Tensor,
    host_name: str,
    architecture: str,
    use_error_term: bool,
) -> None:
    host, sae = hosts[host_name], make_sae(architecture)
    latent = 5
    with host.splice_saes([sae], use_error_term=use_error_term):
        before = host.run_with_cache(tiny_tokens, [HOOK, f"{HOOK}.hook_sae_acts"]).cache
    for name, edit, delta in edit_cases(sae, before[f"{HOOK}.hook_sae_acts"], latent):
        with host.splice_saes([sae], use_error_term=use_error_term), edit:
            after = host.harvest(tiny_tokens, [HOOK])[HOOK]
        expected = delta[..., None] * sae.W_dec[latent].detach()  # [B, T, d_in]
        shift = after - before[HOOK]
        torch.testing.assert_close(shift[:, 1:], expected[:, 1:], atol=1e-5, rtol=1e-5, msg=name)
        assert torch.equal(shift[:, 0], torch.zeros_like(shift[:, 0])), name  # BOS stays clean


def test_several_saes_splice_at_once(host: Host, tiny_tokens: Tensor) -> None:
    upstream, downstream = "blocks.0.hook_resid_post", "blocks.2.hook_mlp_out"
    first, second = make_sae("topk", upstream), make_sae("relu", downstream)
    with host.splice_saes([first, second]):
        both = host.logits(tiny_tokens)
        cache = host.run_with_cache(tiny_tokens, [f"{upstream}.hook_sae_x_hat", downstream]).cache
    with host.splice({upstream: first}):
        mlp_out = host.harvest(tiny_tokens, [downstream])[downstream]  # [B, T, d_in]
        with host.splice({downstream: second}):
            reference = host.logits(tiny_tokens)

    torch.testing.assert_close(both, reference)
    torch.testing.assert_close(
        cache[downstream][:, 1:], second(mlp_out).detach()[:, 1:], atol=1e-5, rtol=1e-5
    )
    assert cache[f"{upstream}.hook_sae_x_hat"].shape == (*tiny_tokens.shape, D_MODEL)


def test_sae_points_cache_in_same_pass(host: Host, tiny_tokens: Tensor) -> None:
    sae = make_sae("topk")
    names = [HOOK, f"{HOOK}.hook_sae_input", f"{HOOK}.hook_sae_acts", f"{HOOK}.hook_sae_error"]
    calls = []
    sae.register_forward_hook(lambda module, inputs, output: calls.append(1))
    with host.splice_saes([sae], use_error_term=True):
        run = host.run_with_cache(tiny_tokens, names)
    x = run.cache[f"{HOOK}.hook_sae_input"]  # [B, T, d_in]
    acts = run.cache[f"{HOOK}.hook_sae_acts"]  # [B, T, d_sae]
    torch.testing.assert_close(x, run.cache[HOOK])
    torch.testing.assert_close(acts, sae.encode(x).detach())
    torch.testing.assert_close(run.cache[f"{HOOK}.hook_sae_error"], (x - sae.decode(acts)).detach())
    torch.testing.assert_close(run.logits, host.logits(tiny_tokens))
    assert acts.shape == (*tiny_tokens.shape, 64)


def test_run_with_hooks_edits_sae_point(host: Host, tiny_tokens: Tensor) -> None:
    sae = make_sae("topk")
    with host.splice_saes([sae], use_error_term=True):
        edited = host.run_with_hooks(
            tiny_tokens, [(f"{HOOK}.hook_sae_acts", lambda acts: torch.zeros_like(acts))]
        )

    def error_plus_bias(x: Tensor) -> Tensor:
        """Zeroing every latent leaves the error term plus b_dec, x − x̂ + b_dec, after BOS."""
        replaced = x - sae(x).detach() + sae.b_dec.detach()  # [B, T, d_in]
        return torch.cat([x[:, :1], replaced[:, 1:]], dim=1)

    reference = host.run_with_hooks(tiny_tokens, [(HOOK, error_plus_bias)])
    torch.testing.assert_close(edited, reference, atol=1e-5, rtol=1e-5)


def test_transformer_lens_bridge_sees_sae_points(tiny_host: TransformerLensHost, tiny_tokens):
    sae = make_sae("topk")
    seen = []
    with tiny_host.splice_saes({HOOK: sae}):
        tiny_host.bridge.run_with_hooks(
            tiny_tokens,
            fwd_hooks=[(f"{HOOK}.hook_sae_acts", lambda acts, hook: seen.append(hook.name))],
        )
        _, cache = tiny_host.bridge.run_with_cache(
            tiny_tokens, names_filter=[f"{HOOK}.hook_sae_pre_acts"], return_cache_object=False
        )
    assert seen == [f"{HOOK}.hook_sae_acts"]
    assert cache[f"{HOOK}.hook_sae_pre_acts"].shape == (*tiny_tokens.shape, 64)
    assert f"{HOOK}.hook_sae_acts" not in tiny_host.bridge.hook_dict


class Boom(Exception):
    pass


def raise_boom(value: Tensor) -> None:
    raise Boom


@pytest.mark.parametrize("where", ["body", "sae_point", "cache_hook", "harvest", "edit"])
def test_error_inside_splice_leaves_no_hooks(host: Host, tiny_tokens: Tensor, where: str) -> None:
    sae = make_sae("topk")
    user_calls: list[int] = []
    user_handle = sae.hook_acts.register_forward_hook(lambda m, i, o: user_calls.append(1))
    try:
        baseline = host.logits(tiny_tokens)
        before = hook_state(host, [sae])
        with pytest.raises(Boom):
            with host.splice_saes([sae], use_error_term=True):
                if where == "body":
                    raise Boom
                if where == "sae_point":
                    host.run_with_hooks(tiny_tokens, [(f"{HOOK}.hook_sae_acts", raise_boom)])
                if where == "cache_hook":
                    host.run_with_hooks(tiny_tokens, [("blocks.2.hook_resid_post", raise_boom)])
                if where == "harvest":
                    with host.splice({"blocks.0.hook_mlp_out": raise_boom}):
                        host.harvest(tiny_tokens, [HOOK])
                if where == "edit":
                    with clamp_latents(sae, 1, 1.0), edit_latents(sae, raise_boom):
                        host.logits(tiny_tokens)
        assert hook_state(host, [sae]) == before
        assert torch.equal(host.logits(tiny_tokens), baseline)
        calls_before = len(user_calls)
        sae(torch.randn(2, D_MODEL))
        assert len(user_calls) == calls_before + 1  # the user's hook survived
    finally:
        user_handle.remove()


def test_user_host_hook_survives_splice(host: Host, tiny_tokens: Tensor) -> None:
    block = host.bridge.original_model if isinstance(host, TransformerLensHost) else host.model
    calls: list[int] = []
    handle = block.model.layers[3].register_forward_hook(lambda m, i, o: calls.append(1))
    try:
        with pytest.raises(Boom):
            with host.splice_saes([make_sae("relu")]):
                host.logits(tiny_tokens)
                raise Boom
        host.logits(tiny_tokens)
        assert len(calls) == 2
    finally:
        handle.remove()


def test_sae_splice_restores_existing_hook_error() -> None:
    sae = make_sae("topk")
    with SAESplice(sae, use_error_term=True):
        assert hasattr(sae, "hook_error")
    assert not hasattr(sae, "hook_error")
    assert len(sae.hook_acts._forward_hooks) == 0


def test_edit_rejects_latent_out_of_range() -> None:
    with pytest.raises(ValueError, match="d_sae - 1 = 63"):
        ablate_latents(make_sae("topk"), [64])


def test_same_hook_spliced_twice_is_rejected(host: Host) -> None:
    with host.splice_saes([make_sae("topk")]):
        with pytest.raises(ValueError, match="already spliced"):
            with host.splice_saes([make_sae("relu")]):
                pass
    assert hook_state(host, [])["hook_error"] == []


def make_half_sae(dtype: str) -> nn.Module:
    """A topk SAE of ``make_sae`` with its parameters cast to ``dtype`` and its config to match."""
    sae = make_sae("topk")
    sae.cfg = SAEConfig(**{**sae.cfg.__dict__, "dtype": dtype})
    return sae.to(sae.cfg.torch_dtype)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_plain_splice_casts_half_sae(host: Host, tiny_tokens: Tensor, dtype: str) -> None:
    sae = make_half_sae(dtype)
    with host.splice({HOOK: sae}):
        spliced = host.logits(tiny_tokens)
    with host.splice_saes({HOOK: sae}):
        expected = host.logits(tiny_tokens)
    assert spliced.dtype == torch.float32
    torch.testing.assert_close(spliced, expected)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_error_term_exact_for_half_sae(host: Host, tiny_tokens: Tensor, dtype: str) -> None:
    sae = make_half_sae(dtype)
    clean = host.logits(tiny_tokens)
    clean_acts = host.harvest(tiny_tokens, [HOOK])[HOOK]
    with host.splice_saes([sae], use_error_term=True):
        spliced = host.logits(tiny_tokens)
        cache = host.run_with_cache(tiny_tokens, [HOOK]).cache
    assert torch.equal(spliced, clean)
    assert torch.equal(cache[HOOK], clean_acts)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_sae_steer_adds_decoder_row(host: Host, tiny_tokens: Tensor, dtype: str) -> None:
    sae, latent, amount = make_half_sae(dtype), 5, 2.0
    clean_acts = host.harvest(tiny_tokens, [HOOK])[HOOK]
    with host.splice_saes([sae], use_error_term=True), steer_latents(sae, latent, amount):
        steered = host.run_with_cache(tiny_tokens, [HOOK]).cache[HOOK]
    # Position 0 is BOS and keeps its clean activation, and every other one moves by the row.
    row = (amount * sae.W_dec[latent]).float()
    torch.testing.assert_close(steered[:, 1:], clean_acts[:, 1:] + row, atol=1e-6, rtol=1e-6)
    assert torch.equal(steered[:, 0], clean_acts[:, 0])
