"""Save, load and splice round trips for the BatchTopK, JumpReLU, gated and Matryoshka SAEs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from saehooks.hosts import TransformerLensHost
from saehooks.io import load_sae, save_sae
from saehooks.sae import BatchTopKSAE, GatedSAE, JumpReLUSAE, SAEConfig, build_sae

HOOK = "blocks.1.hook_resid_post"
D_MODEL = 32
SETTINGS = {
    "batchtopk": {"k": 3},
    "matryoshka": {"k": 3, "matryoshka_widths": (8, 24, 64)},
    "jumprelu": {"k": None, "jumprelu_threshold": 0.3, "jumprelu_bandwidth": 0.05},
    "gated": {"k": None},
}


def make_sae(architecture: str, dtype: str = "float32"):
    cfg = SAEConfig(
        d_in=D_MODEL,
        d_sae=64,
        architecture=architecture,
        dtype=dtype,
        hook_name=HOOK,
        model_name="tiny",
        **SETTINGS[architecture],
    )
    sae = build_sae(cfg)
    with torch.no_grad():
        # Non-zero values everywhere, so that a dropped or swapped tensor changes the outputs.
        for name, parameter in sae.named_parameters():
            if parameter.ndim == 1 and name != "threshold":
                parameter.normal_(0.0, 0.1)
        if isinstance(sae, JumpReLUSAE):
            sae.threshold.uniform_(0.1, 0.5)
        if isinstance(sae, BatchTopKSAE):
            sae.threshold.fill_(0.2)
            sae.threshold_updates.fill_(10)
    return sae


@pytest.fixture
def tokens() -> torch.Tensor:
    return torch.randint(3, 64, (2, 9), generator=torch.Generator().manual_seed(4))


def weight_keys(folder: Path) -> set[str]:
    return set(load_file(str(folder / "sae_weights.safetensors")))


@pytest.mark.parametrize("architecture", ["jumprelu", "gated"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_round_trip_is_exact(tmp_path: Path, architecture: str, dtype: str) -> None:
    sae = make_sae(architecture, dtype)
    save_sae(sae, tmp_path / "sae")
    loaded = load_sae(tmp_path / "sae")
    assert type(loaded) is type(sae)
    assert loaded.cfg == sae.cfg
    for name, value in sae.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
        assert loaded.state_dict()[name].dtype == value.dtype, name
    x = torch.randn(3, 5, D_MODEL).to(sae.cfg.torch_dtype)
    with torch.no_grad():
        assert torch.equal(loaded(x), sae(x))


def test_saelens_key_names(tmp_path: Path) -> None:
    save_sae(make_sae("jumprelu", "bfloat16"), tmp_path / "jumprelu")
    save_sae(make_sae("gated"), tmp_path / "gated")
    assert weight_keys(tmp_path / "jumprelu") == {"W_enc", "W_dec", "b_enc", "b_dec", "threshold"}
    gated_keys = {"W_enc", "W_dec", "b_dec", "b_gate", "r_mag", "b_mag"}
    assert weight_keys(tmp_path / "gated") == gated_keys
    tensors = load_file(str(tmp_path / "jumprelu" / "sae_weights.safetensors"))
    assert tensors["threshold"].dtype == torch.float32
    assert tensors["W_enc"].dtype == torch.bfloat16
    for name in ("jumprelu", "gated"):
        cfg = json.loads((tmp_path / name / "cfg.json").read_text())
        assert cfg["architecture"] == name
        assert "k" not in cfg


def test_bfloat16_threshold_from_saelens_loads(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    sae = make_sae("jumprelu", "bfloat16")
    save_sae(sae, tmp_path / "sae")
    path = tmp_path / "sae" / "sae_weights.safetensors"
    tensors = load_file(str(path))
    tensors["threshold"] = tensors["threshold"].to(torch.bfloat16)
    save_file(tensors, str(path))
    loaded = load_sae(tmp_path / "sae")
    assert loaded.threshold.dtype == torch.float32
    assert torch.equal(loaded.threshold, sae.threshold.to(torch.bfloat16).float())


def test_missing_threshold_raises(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    save_sae(make_sae("jumprelu"), tmp_path / "sae")
    path = tmp_path / "sae" / "sae_weights.safetensors"
    tensors = load_file(str(path))
    del tensors["threshold"]
    save_file(tensors, str(path))
    with pytest.raises(ValueError, match=r"missing \['threshold'\]"):
        load_sae(tmp_path / "sae")


@pytest.mark.parametrize("architecture", ["batchtopk", "matryoshka"])
def test_batchtopk_saves_as_jumprelu(tmp_path: Path, architecture: str) -> None:
    sae = make_sae(architecture)
    save_sae(sae, tmp_path / "sae")
    cfg = json.loads((tmp_path / "sae" / "cfg.json").read_text())
    assert cfg["architecture"] == "jumprelu"
    assert cfg["metadata"]["trained_architecture"] == architecture
    assert cfg["metadata"]["trained_k"] == 3
    assert cfg["metadata"]["threshold_updates"] == 10

    loaded = load_sae(tmp_path / "sae")
    assert isinstance(loaded, JumpReLUSAE)
    assert torch.equal(loaded.threshold, torch.full((64,), 0.2))
    x = torch.randn(4, 6, D_MODEL)
    with torch.no_grad():
        assert torch.equal(loaded(x), sae.to_jumprelu()(x))
        pre_acts = sae.encode_pre_acts(x.reshape(-1, D_MODEL))
        expected = (pre_acts * (pre_acts > 0.2)) @ sae.W_dec + sae.b_dec
        torch.testing.assert_close(loaded(x).reshape(-1, D_MODEL), expected)


def test_batchtopk_without_estimate_refuses_to_save(tmp_path: Path) -> None:
    sae = make_sae("batchtopk")
    with torch.no_grad():
        sae.threshold_updates.zero_()
    with pytest.raises(ValueError, match="threshold_updates=0"):
        save_sae(sae, tmp_path / "sae")
    assert not (tmp_path / "sae").exists()


@pytest.mark.parametrize("architecture", sorted(SETTINGS))
def test_loaded_sae_splices_into_host(
    tmp_path: Path, tiny_host: TransformerLensHost, tokens: torch.Tensor, architecture: str
) -> None:
    sae = make_sae(architecture)
    save_sae(sae, tmp_path / "sae")
    loaded = load_sae(tmp_path / "sae")
    reference = sae.to_jumprelu() if isinstance(sae, BatchTopKSAE) else sae

    captured: list[torch.Tensor] = []
    with tiny_host.splice({HOOK: lambda a: captured.append(a) or a}):
        clean = tiny_host.logits(tokens)
    with tiny_host.splice({HOOK: loaded}), torch.no_grad():
        spliced = tiny_host.logits(tokens)
    with tiny_host.splice({HOOK: reference}), torch.no_grad():
        expected = tiny_host.logits(tokens)

    assert torch.equal(spliced, expected)
    assert torch.equal(spliced[:, 0], clean[:, 0])  # BOS keeps its clean activation
    assert not torch.allclose(spliced[:, 1:], clean[:, 1:])
    assert isinstance(loaded, GatedSAE if architecture == "gated" else JumpReLUSAE)
    assert captured[0].shape == (2, 9, D_MODEL)
