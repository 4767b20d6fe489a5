"""Composite SAEs save to their own folder layout, load back exactly and splice into a host."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch.testing import assert_close

from saehooks.hosts import TransformerLensHost
from saehooks.io import load_sae, save_sae
from saehooks.sae import (
    CompositeSAE,
    DeepConfig,
    HierarchicalConfig,
    MixtureConfig,
    build_sae,
)

HOOK = "blocks.1.hook_resid_post"
CONFIGS = {
    "moe": MixtureConfig(d_in=32, d_sae=64, n_experts=4, k=4, hook_name=HOOK),
    "hierarchical": HierarchicalConfig(
        d_in=32, d_sae=8 * 5, child_size=4, k=3, child_k=2, hook_name=HOOK
    ),
    "deep": DeepConfig(d_in=32, d_sae=64, k=4, d_hidden=48, hook_name=HOOK),
}


def trained_looking(architecture: str) -> CompositeSAE:
    """A composite with every parameter perturbed away from its initialisation."""
    sae = build_sae(CONFIGS[architecture])
    with torch.no_grad():
        for parameter in sae.parameters():
            if parameter.requires_grad:
                parameter.add_(0.05 * torch.randn_like(parameter))
    assert isinstance(sae, CompositeSAE)
    return sae


@pytest.mark.parametrize("architecture", sorted(CONFIGS))
def test_save_load_round_trip(architecture: str, tmp_path: Path) -> None:
    sae = trained_looking(architecture)
    folder = save_sae(sae, tmp_path / "sae", extra={"training_tokens": 1234})
    loaded = load_sae(folder)

    assert type(loaded) is type(sae)
    assert loaded.cfg == sae.cfg
    for name, value in sae.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    x = torch.randn(2, 5, 32)
    with torch.no_grad():
        assert_close(loaded(x), sae(x), atol=0, rtol=0)

    cfg_json = json.loads((folder / "cfg.json").read_text())
    assert cfg_json["format"] == "saehooks-composite"
    assert cfg_json["architecture"] == architecture
    assert cfg_json["metadata"] == {"model_name": "", "hook_name": HOOK, "training_tokens": 1234}
    assert sorted(path.name for path in folder.iterdir()) == ["cfg.json", "sae_weights.safetensors"]


def test_load_casts_to_requested_dtype(tmp_path: Path) -> None:
    sae = trained_looking("moe")
    loaded = load_sae(save_sae(sae, tmp_path / "sae"), dtype="float64")
    assert loaded.cfg.dtype == "float64"
    assert all(p.dtype == torch.float64 for p in loaded.parameters())
    x = torch.randn(8, 32)
    with torch.no_grad():
        assert_close(loaded(x.double()).float(), sae(x), atol=1e-5, rtol=1e-5)


def test_trackers_are_not_saved(tmp_path: Path) -> None:
    from saehooks.trackers import FireCounter

    sae = trained_looking("deep")
    FireCounter(sae.cfg.d_sae).attach(sae, "fires")
    folder = save_sae(sae, tmp_path / "sae")
    assert not any("trackers" in name for name in load_file(folder / "sae_weights.safetensors"))


def test_unknown_cfg_key_is_rejected(tmp_path: Path) -> None:
    folder = save_sae(trained_looking("hierarchical"), tmp_path / "sae")
    cfg_path = folder / "cfg.json"
    values = json.loads(cfg_path.read_text())
    cfg_path.write_text(json.dumps({**values, "child_gate": "activation"}))
    with pytest.raises(ValueError, match=r"unknown HierarchicalConfig keys \['child_gate'\]"):
        load_sae(folder)


def test_missing_format_is_rejected(tmp_path: Path) -> None:
    folder = save_sae(trained_looking("deep"), tmp_path / "sae")
    cfg_path = folder / "cfg.json"
    values = json.loads(cfg_path.read_text())
    del values["format"]
    cfg_path.write_text(json.dumps(values))
    with pytest.raises(ValueError, match="format=None is not 'saehooks-composite'"):
        load_sae(folder)


def test_missing_and_misshapen_tensors_are_rejected(tmp_path: Path) -> None:
    folder = save_sae(trained_looking("moe"), tmp_path / "sae")
    weights_path = folder / "sae_weights.safetensors"
    tensors = load_file(weights_path)

    save_file({k: v for k, v in tensors.items() if k != "experts.3.W_dec"}, weights_path)
    with pytest.raises(ValueError, match=r"missing \['experts.3.W_dec'\]"):
        load_sae(folder)

    save_file({**tensors, "W_router": torch.zeros(32, 5)}, weights_path)
    with pytest.raises(ValueError, match=r"'W_router' has shape \(32, 5\), expected \(32, 4\)"):
        load_sae(folder)

    save_file({**tensors, "b_dec": tensors["b_dec"].double()}, weights_path)
    with pytest.raises(ValueError, match="'b_dec' has dtype torch.float64, expected torch.float32"):
        load_sae(folder)


@pytest.mark.parametrize("architecture", sorted(CONFIGS))
def test_loaded_composite_splices_into_host(
    architecture: str, tiny_host: TransformerLensHost, tmp_path: Path
) -> None:
    sae = trained_looking(architecture)
    loaded = load_sae(save_sae(sae, tmp_path / "sae"))
    tokens = torch.tensor([[1, 5, 9, 13, 20, 33], [1, 40, 2, 7, 7, 60]])

    clean = tiny_host.logits(tokens)
    seen: list[torch.Tensor] = []

    def recorded(activation: torch.Tensor) -> torch.Tensor:
        seen.append(activation.detach().clone())
        return sae(activation)

    with torch.no_grad():
        with tiny_host.splice({HOOK: recorded}):
            spliced = tiny_host.logits(tokens)
        with tiny_host.splice({HOOK: loaded}):
            spliced_loaded = tiny_host.logits(tokens)

    assert seen[0].shape == (2, 6, 32)
    assert_close(spliced_loaded, spliced, atol=0, rtol=0)
    assert not torch.allclose(spliced, clean)
    assert_close(spliced[:, 0], clean[:, 0])  # BOS keeps its clean activation


def test_non_finite_weight_raises(tmp_path: Path) -> None:
    architecture = sorted(CONFIGS)[0]
    folder = save_sae(trained_looking(architecture), tmp_path / "sae")
    weights_path = folder / "sae_weights.safetensors"
    tensors = load_file(str(weights_path))
    name = next(name for name, tensor in tensors.items() if tensor.is_floating_point())
    tensors[name].view(-1)[0] = float("inf")
    save_file(tensors, str(weights_path))

    with pytest.raises(ValueError, match=rf"tensor '{name}' contains 1 NaN or infinite"):
        load_sae(folder)
