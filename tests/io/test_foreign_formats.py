"""SAELens, sparsify and dictionary_learning folders written by hand load to the same SAE."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from saehooks.io import save_sae
from saehooks.io.formats import detect_format, load_folder, load_hub
from saehooks.io.saelens import load_saelens
from saehooks.sae import SAEConfig, build_sae

D_IN, D_SAE, K = 8, 24, 4


@pytest.fixture()
def weights() -> dict[str, torch.Tensor]:
    """Random TopK weights in saehooks's layout; b_enc is large so that every pre-act is > 0."""
    generator = torch.Generator().manual_seed(7)
    return {
        "W_enc": torch.randn(D_IN, D_SAE, generator=generator) * 0.1,
        "b_enc": torch.rand(D_SAE, generator=generator) + 5.0,
        "W_dec": torch.randn(D_SAE, D_IN, generator=generator),
        "b_dec": torch.randn(D_IN, generator=generator),
    }


def write_json(path: Path, values: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values))


def write_saelens_v6(folder: Path, weights: dict[str, torch.Tensor]) -> Path:
    cfg = {
        "architecture": "topk",
        "d_in": D_IN,
        "d_sae": D_SAE,
        "k": K,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {
            "sae_lens_version": "6.5.1",
            "hook_name": "blocks.3.hook_resid_post",
            "model_name": "tiny",
            "context_size": 128,
        },
    }
    write_json(folder / "cfg.json", cfg)
    save_file(weights, str(folder / "sae_weights.safetensors"))
    return folder


def write_saelens_flat(folder: Path, weights: dict[str, torch.Tensor]) -> Path:
    cfg = {
        "d_in": D_IN,
        "d_sae": D_SAE,
        "activation_fn_str": "topk",
        "activation_fn_kwargs": {"k": K},
        "apply_b_dec_to_input": True,
        "hook_point": "blocks.3.hook_resid_post",
        "hook_point_layer": 3,
        "model_name": "tiny",
        "dtype": "torch.float32",
        "context_size": 128,
        "normalize_activations": False,
        "sae_lens_training_version": "3.1.0",
    }
    write_json(folder / "cfg.json", cfg)
    save_file(weights, str(folder / "sae_weights.safetensors"))
    return folder


def write_sparsify(folder: Path, weights: dict[str, torch.Tensor]) -> Path:
    cfg = {
        "activation": "topk",
        "expansion_factor": 32,
        "normalize_decoder": True,
        "num_latents": D_SAE,
        "k": K,
        "multi_topk": False,
        "skip_connection": False,
        "transcode": False,
        "d_in": D_IN,
    }
    write_json(folder / "cfg.json", cfg)
    tensors = {
        "encoder.weight": weights["W_enc"].T.contiguous(),  # [d_sae, d_in]
        "encoder.bias": weights["b_enc"],
        "W_dec": weights["W_dec"],  # [d_sae, d_in], as sparsify stores it
        "b_dec": weights["b_dec"],
    }
    save_file(tensors, str(folder / "sae.safetensors"))
    return folder


def write_dictionary_learning(folder: Path, weights: dict[str, torch.Tensor]) -> Path:
    trainer = {
        "trainer_class": "TopKTrainer",
        "dict_class": "AutoEncoderTopK",
        "activation_dim": D_IN,
        "dict_size": D_SAE,
        "k": K,
        "lm_name": "tiny",
        "layer": 3,
    }
    write_json(folder / "config.json", {"trainer": trainer, "buffer": {"ctx_len": 128}})
    state = {
        "encoder.weight": weights["W_enc"].T.contiguous(),  # [d_sae, d_in]
        "encoder.bias": weights["b_enc"],
        "decoder.weight": weights["W_dec"].T.contiguous(),  # [d_in, d_sae]
        "b_dec": weights["b_dec"],
        "k": torch.tensor(K, dtype=torch.int32),
        "threshold": torch.tensor(-1.0),
    }
    torch.save(state, folder / "ae.pt")
    return folder


WRITERS = {
    "saelens": write_saelens_v6,
    "saelens_flat": write_saelens_flat,
    "sparsify": write_sparsify,
    "dictionary_learning": write_dictionary_learning,
}


def test_three_layouts_load_identically(tmp_path: Path, weights: dict[str, torch.Tensor]) -> None:
    saes = {
        name: load_folder(
            writer(tmp_path / name / "layers.3", weights), hook_name="blocks.3.hook_resid_post"
        )
        for name, writer in WRITERS.items()
    }
    x = torch.randn(2, 5, D_IN, generator=torch.Generator().manual_seed(1))  # [B, T, d_in]
    reference = saes["saelens"]
    for name, sae in saes.items():
        assert sae.cfg.architecture == "topk", name
        assert sae.cfg.k == K, name
        assert sae.cfg.hook_name == "blocks.3.hook_resid_post", name
        for parameter in ("W_enc", "b_enc", "W_dec", "b_dec"):
            assert torch.equal(getattr(sae, parameter), weights[parameter]), (name, parameter)
        acts = sae.encode(x)  # [B, T, d_sae]
        assert torch.equal((acts != 0).sum(dim=-1), torch.full((2, 5), K)), name
        torch.testing.assert_close(sae(x), reference(x), rtol=0, atol=0)


def test_topk_forward_matches_manual(tmp_path: Path, weights: dict[str, torch.Tensor]) -> None:
    sae = load_folder(write_sparsify(tmp_path / "layers.2", weights))
    x = torch.randn(3, D_IN, generator=torch.Generator().manual_seed(2))  # [n, d_in]
    pre_acts = torch.relu((x - weights["b_dec"]) @ weights["W_enc"] + weights["b_enc"])
    top = pre_acts.topk(K, dim=-1)
    acts = torch.zeros_like(pre_acts).scatter(-1, top.indices, top.values)  # [n, d_sae]
    torch.testing.assert_close(sae(x), acts @ weights["W_dec"] + weights["b_dec"])
    assert sae.cfg.hook_name == "blocks.2.hook_resid_post"


def test_detect_format_names_layouts(tmp_path: Path, weights: dict[str, torch.Tensor]) -> None:
    assert detect_format(write_saelens_v6(tmp_path / "a", weights)) == "saelens"
    assert detect_format(write_sparsify(tmp_path / "b", weights)) == "sparsify"
    dl_folder = write_dictionary_learning(tmp_path / "c", weights)
    assert detect_format(dl_folder) == "dictionary_learning"
    sae = build_sae(SAEConfig(d_in=D_IN, d_sae=D_SAE, k=K))
    assert detect_format(save_sae(sae, tmp_path / "d")) == "saehooks"
    with pytest.raises(FileNotFoundError, match="no SAE folder"):
        detect_format(tmp_path)


ARCHITECTURE_CONFIGS = {
    "relu": {"architecture": "relu", "k": None},
    "topk": {"architecture": "topk", "k": 5},
    "jumprelu": {"architecture": "jumprelu", "k": None},
    "gated": {"architecture": "gated", "k": None},
}


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("architecture", sorted(ARCHITECTURE_CONFIGS))
def test_save_then_saelens_load_is_bit_exact(tmp_path: Path, architecture: str, dtype: str) -> None:
    torch.manual_seed(3)
    cfg = SAEConfig(d_in=D_IN, d_sae=D_SAE, dtype=dtype, **ARCHITECTURE_CONFIGS[architecture])
    sae = build_sae(cfg)
    with torch.no_grad():
        for parameter in sae.parameters(recurse=False):
            parameter.copy_(torch.randn_like(parameter, dtype=torch.float32))
    folder = save_sae(sae, tmp_path / architecture)

    for loaded in (load_saelens(folder), load_folder(folder)):
        assert loaded.cfg.architecture == architecture
        assert loaded.cfg.dtype == dtype
        originals = dict(sae.named_parameters(recurse=False))
        for name, parameter in loaded.named_parameters(recurse=False):
            assert parameter.dtype == originals[name].dtype, name
            assert torch.equal(parameter, originals[name]), name


def test_bfloat16_without_stated_dtype_stays(tmp_path: Path, weights: dict) -> None:
    halves = {name: value.to(torch.bfloat16) for name, value in weights.items()}
    folder = write_sparsify(tmp_path / "layers.1", halves)
    assert load_folder(folder).W_enc.dtype == torch.bfloat16
    assert load_folder(folder, dtype="float32").W_enc.dtype == torch.float32

    dl_folder = write_dictionary_learning(tmp_path / "dl", halves)
    assert load_folder(dl_folder).W_dec.dtype == torch.bfloat16


def test_input_scale_is_folded(tmp_path: Path, weights: dict[str, torch.Tensor]) -> None:
    folder = write_saelens_v6(tmp_path / "scaled", weights)
    cfg = json.loads((folder / "cfg.json").read_text())
    write_json(folder / "cfg.json", {**cfg, "normalize_activations": "expected_average_only_in"})
    with pytest.raises(ValueError, match="needs the stored scaling_factor"):
        load_saelens(folder)

    write_json(folder / "activation_scaler.json", {"scaling_factor": 2.5})
    unscaled = load_saelens(write_saelens_v6(tmp_path / "plain", weights))
    scaled = load_saelens(folder)
    x = torch.randn(4, D_IN, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(scaled(x), unscaled(2.5 * x) / 2.5)


def test_latent_scale_is_folded(tmp_path: Path, weights: dict[str, torch.Tensor]) -> None:
    scaling = torch.linspace(0.5, 2.0, D_SAE)
    folder = write_saelens_flat(tmp_path / "flat", {**weights, "scaling_factor": scaling})
    with pytest.raises(ValueError, match="finetuning_scaling_factor is not true"):
        load_saelens(folder)

    cfg = json.loads((folder / "cfg.json").read_text())
    write_json(folder / "cfg.json", {**cfg, "finetuning_scaling_factor": True})
    sae = load_saelens(folder)
    x = torch.randn(4, D_IN, generator=torch.Generator().manual_seed(5))
    pre_acts = (x - weights["b_dec"]) @ weights["W_enc"] + weights["b_enc"]  # [n, d_sae]
    top = pre_acts.topk(K, dim=-1)
    acts = torch.zeros_like(pre_acts).scatter(-1, top.indices, top.values.relu())
    torch.testing.assert_close(sae(x), (acts * scaling) @ weights["W_dec"] + weights["b_dec"])


@pytest.mark.parametrize("layout", sorted(WRITERS))
def test_truncated_weights_raise(tmp_path: Path, weights: dict, layout: str) -> None:
    folder = WRITERS[layout](tmp_path / layout, weights)
    weights_file = next(path for path in folder.iterdir() if path.suffix in (".pt", ".safetensors"))
    data = weights_file.read_bytes()
    weights_file.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=str(weights_file.name)):
        load_folder(folder)


@pytest.mark.parametrize("layout", sorted(WRITERS))
def test_corrupted_header_raises(tmp_path: Path, weights: dict, layout: str) -> None:
    folder = WRITERS[layout](tmp_path / layout, weights)
    weights_file = next(path for path in folder.iterdir() if path.suffix in (".pt", ".safetensors"))
    data = bytearray(weights_file.read_bytes())
    data[:16] = b"\xff" * 16
    weights_file.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=str(weights_file.name)):
        load_folder(folder)


@pytest.mark.parametrize("layout", sorted(WRITERS))
def test_shape_disagreeing_with_config_raises(tmp_path: Path, weights: dict, layout: str) -> None:
    wrong = {**weights, "W_dec": weights["W_dec"][:-1], "W_enc": weights["W_enc"][:, :-1].clone()}
    wrong["b_enc"] = weights["b_enc"][:-1]
    folder = WRITERS[layout](tmp_path / layout, wrong)
    with pytest.raises(ValueError, match="has shape"):
        load_folder(folder)


@pytest.mark.parametrize("layout", sorted(WRITERS))
def test_unknown_tensor_key_raises(tmp_path: Path, weights: dict, layout: str) -> None:
    folder = WRITERS[layout](tmp_path / layout, {**weights, "W_extra": torch.zeros(3)})
    if layout == "dictionary_learning":
        state = torch.load(folder / "ae.pt", weights_only=True)
        torch.save({**state, "W_extra": torch.zeros(3)}, folder / "ae.pt")
    elif layout == "sparsify":
        from safetensors.torch import load_file

        state = load_file(str(folder / "sae.safetensors"))
        save_file({**state, "W_extra": torch.zeros(3)}, str(folder / "sae.safetensors"))
    with pytest.raises(ValueError, match=r"unexpected \['W_extra'\]"):
        load_folder(folder)


@pytest.mark.parametrize(
    ("layout", "edit", "message"),
    [
        ("saelens", {"architecture": "mystery"}, "architecture 'mystery' is not supported"),
        ("saelens_flat", {"activation_fn_str": "gelu"}, "activation 'gelu' is unknown"),
        ("saelens", {"learning_rate_for_fun": 1}, "unknown keys"),
        ("sparsify", {"activation": "groupmax"}, "activation 'groupmax' is not supported"),
        ("sparsify", {"activation": "softplus"}, "never falls back to ReLU"),
        ("sparsify", {"skip_connection": True}, "skip_connection=true"),
        ("sparsify", {"extra_field": 0}, "unknown keys"),
    ],
)
def test_config_errors(tmp_path: Path, weights: dict, layout: str, edit: dict, message: str):
    folder = WRITERS[layout](tmp_path / layout, weights)
    cfg = json.loads((folder / "cfg.json").read_text())
    write_json(folder / "cfg.json", {**cfg, **edit})
    with pytest.raises(ValueError, match=message):
        load_folder(folder)


def test_flat_config_without_activation_raises(tmp_path: Path, weights: dict) -> None:
    folder = write_saelens_flat(tmp_path / "flat", weights)
    cfg = json.loads((folder / "cfg.json").read_text())
    del cfg["activation_fn_str"]
    write_json(folder / "cfg.json", cfg)
    with pytest.raises(ValueError, match="neither an architecture nor an activation"):
        load_saelens(folder)


def test_unknown_dict_class_raises(tmp_path: Path, weights: dict) -> None:
    folder = write_dictionary_learning(tmp_path / "dl", weights)
    values = json.loads((folder / "config.json").read_text())
    values["trainer"]["dict_class"] = "MysteryAutoEncoder"
    write_json(folder / "config.json", values)
    with pytest.raises(ValueError, match="dict_class 'MysteryAutoEncoder' is not supported"):
        load_folder(folder)


def test_pickled_object_is_rejected(tmp_path: Path, weights: dict) -> None:
    folder = write_dictionary_learning(tmp_path / "dl", weights)
    torch.save({"encoder.weight": weights["W_enc"], "note": Path("x")}, folder / "ae.pt")
    with pytest.raises(ValueError, match="weights_only"):
        load_folder(folder)


def write_hub_cache(cache: Path, weights: dict[str, torch.Tensor]) -> None:
    """Lay out ``org/saes`` as huggingface_hub caches it, with layers.3 as a sparsify folder."""
    repo = cache / "models--org--saes"
    revision = "0123456789abcdef0123456789abcdef01234567"
    write_sparsify(repo / "snapshots" / revision / "layers.3", weights)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)


def test_hub_cache_is_read_offline(
    tmp_path: Path, weights: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_hub_cache(tmp_path / "hub", weights)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    sae = load_hub("org/saes", "layers.3", format="sparsify")
    assert sae.cfg.hook_name == "blocks.3.hook_resid_post"
    assert torch.equal(sae.W_dec, weights["W_dec"])

    with pytest.raises(FileNotFoundError, match="layers.4/cfg.json of hub repository org/saes"):
        load_hub("org/saes", "layers.4", format="sparsify")
    with pytest.raises(FileNotFoundError, match="offline mode is on"):
        load_hub("org/other", "layers.3", format="sparsify")


def test_flat_jumprelu_with_log_threshold(tmp_path: Path, weights: dict) -> None:
    log_threshold = torch.linspace(-2.0, 1.8, D_SAE)  # thresholds 0.14 .. 6.0 around b_enc ~ 5.5
    folder = write_saelens_flat(tmp_path / "jump", {**weights, "log_threshold": log_threshold})
    cfg = json.loads((folder / "cfg.json").read_text())
    write_json(
        folder / "cfg.json", {**cfg, "architecture": "jumprelu", "activation_fn_str": "relu"}
    )
    sae = load_saelens(folder)
    assert sae.cfg.architecture == "jumprelu"
    torch.testing.assert_close(sae.threshold, log_threshold.exp())

    x = torch.randn(4, D_IN, generator=torch.Generator().manual_seed(6))
    pre_acts = (x - weights["b_dec"]) @ weights["W_enc"] + weights["b_enc"]  # [n, d_sae]
    acts = pre_acts * (pre_acts > log_threshold.exp())
    assert 0 < int((acts > 0).sum()) < acts.numel()
    torch.testing.assert_close(sae(x), acts @ weights["W_dec"] + weights["b_dec"])


def test_gated_saelens_folder_loads(tmp_path: Path, weights: dict) -> None:
    gated = {name: weights[name] for name in ("W_enc", "W_dec", "b_dec")}
    b_gate = torch.linspace(-0.3, 0.3, D_SAE)
    r_mag = torch.linspace(-0.5, 0.5, D_SAE)
    b_mag = weights["b_enc"] - 5.5
    gated |= {"b_gate": b_gate, "r_mag": r_mag, "b_mag": b_mag}
    folder = write_saelens_v6(tmp_path / "gated", gated)
    cfg = json.loads((folder / "cfg.json").read_text())
    del cfg["k"]
    write_json(folder / "cfg.json", {**cfg, "architecture": "gated"})
    sae = load_saelens(folder)
    x = torch.randn(4, D_IN, generator=torch.Generator().manual_seed(8))
    projection = (x - weights["b_dec"]) @ weights["W_enc"]  # [n, d_sae]
    acts = (projection + b_gate > 0) * torch.relu(projection * r_mag.exp() + b_mag)
    assert 0 < int((acts > 0).sum()) < acts.numel()
    torch.testing.assert_close(sae(x), acts @ weights["W_dec"] + weights["b_dec"])


def test_decoder_norm_rescale_is_folded(tmp_path: Path, weights: dict) -> None:
    folder = write_saelens_v6(tmp_path / "rescaled", weights)
    cfg = json.loads((folder / "cfg.json").read_text())
    write_json(folder / "cfg.json", {**cfg, "rescale_acts_by_decoder_norm": True})
    sae = load_saelens(folder)

    # SAELens 6.54 TopKSAE: pre-activations times the decoder row norms choose the top k, and
    # the latent activations are divided by those norms before the decoder.
    x = torch.randn(2, 3, D_IN, generator=torch.Generator().manual_seed(11))  # [2, 3, d_in]
    norms = weights["W_dec"].norm(dim=-1)  # [d_sae]
    pre_acts = ((x - weights["b_dec"]) @ weights["W_enc"] + weights["b_enc"]) * norms
    top = pre_acts.topk(K, dim=-1)
    acts = torch.zeros_like(pre_acts).scatter(-1, top.indices, top.values.relu())
    x_hat = (acts / norms) @ weights["W_dec"] + weights["b_dec"]  # [2, 3, d_in]
    torch.testing.assert_close(sae.encode(x), acts)
    torch.testing.assert_close(sae(x), x_hat)

    # Without the rescale the top k differ for these weights, so the fold is what matched.
    unscaled = (x - weights["b_dec"]) @ weights["W_enc"] + weights["b_enc"]
    assert not torch.equal(unscaled.topk(K, dim=-1).indices, top.indices)


def test_decoder_norm_rescale_zero_row_raises(tmp_path: Path, weights: dict) -> None:
    W_dec = weights["W_dec"].clone()
    W_dec[5] = 0
    folder = write_saelens_v6(tmp_path / "rescaled", {**weights, "W_dec": W_dec})
    cfg = json.loads((folder / "cfg.json").read_text())
    write_json(folder / "cfg.json", {**cfg, "rescale_acts_by_decoder_norm": True})
    with pytest.raises(ValueError, match=r"decoder rows \[5\] have zero norm"):
        load_saelens(folder)


def test_decoder_norm_rescale_needs_topk(tmp_path: Path, weights: dict) -> None:
    folder = write_saelens_v6(tmp_path / "relu", weights)
    cfg = json.loads((folder / "cfg.json").read_text())
    edit = {"architecture": "standard", "k": None, "rescale_acts_by_decoder_norm": True}
    write_json(folder / "cfg.json", {**cfg, **edit})
    with pytest.raises(ValueError, match="supported for TopK SAEs only"):
        load_saelens(folder)


@pytest.mark.parametrize("layout", sorted(WRITERS))
def test_non_finite_weight_raises(tmp_path: Path, weights: dict, layout: str) -> None:
    spoiled = {**weights, "b_enc": weights["b_enc"].clone()}
    spoiled["b_enc"][2] = float("nan")
    folder = WRITERS[layout](tmp_path / layout, spoiled)
    weights_file = next(path for path in folder.iterdir() if path.suffix in (".pt", ".safetensors"))
    with pytest.raises(ValueError, match=rf"{weights_file.name}: tensor '\S*' contains 1 NaN"):
        load_folder(folder)
