"""Save and load of the native SAE folder: exact round trips and checked failures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from saehooks.io import load_sae, save_sae
from saehooks.sae import SAEConfig, SparseAutoencoder

WEIGHTS = "sae_weights.safetensors"


def make_sae(architecture: str = "topk", dtype: str = "float32") -> SparseAutoencoder:
    cfg = SAEConfig(
        d_in=12,
        d_sae=40,
        architecture=architecture,
        k=5 if architecture == "topk" else None,
        dtype=dtype,
        hook_name="blocks.6.hook_resid_post",
        model_name="SmolLM2-135M-Instruct",
    )
    sae = SparseAutoencoder(cfg)
    with torch.no_grad():
        # Non-zero biases, so that a dropped or swapped bias changes the outputs.
        sae.b_enc.normal_(0.0, 0.1)
        sae.b_dec.normal_(0.0, 0.5)
    return sae


def rewrite_weights(folder: Path, edit) -> None:
    tensors = load_file(str(folder / WEIGHTS))
    edit(tensors)
    save_file(tensors, str(folder / WEIGHTS))


def rewrite_cfg(folder: Path, edit) -> None:
    values = json.loads((folder / "cfg.json").read_text())
    edit(values)
    (folder / "cfg.json").write_text(json.dumps(values))


def leftover_temporary_folders(parent: Path) -> list[str]:
    return sorted(path.name for path in parent.iterdir() if path.name.startswith("."))


@pytest.mark.parametrize("architecture", ["relu", "topk"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_round_trip_is_bitwise_exact(tmp_path: Path, architecture: str, dtype: str) -> None:
    sae = make_sae(architecture, dtype)
    save_sae(sae, tmp_path / "sae")
    loaded = load_sae(tmp_path / "sae")

    assert loaded.cfg == sae.cfg
    for name in ("W_enc", "W_dec", "b_enc", "b_dec"):
        assert getattr(loaded, name).dtype == getattr(sae, name).dtype
        assert torch.equal(getattr(loaded, name), getattr(sae, name)), name
    x = torch.randn(3, 7, 12).to(sae.cfg.torch_dtype)
    with torch.no_grad():
        assert torch.equal(loaded(x), sae(x))


def test_cfg_json_uses_saelens_layout(tmp_path: Path) -> None:
    save_sae(make_sae("relu"), tmp_path / "relu", extra={"training_tokens": 1000})
    save_sae(make_sae("topk"), tmp_path / "topk")
    relu_cfg = json.loads((tmp_path / "relu" / "cfg.json").read_text())
    topk_cfg = json.loads((tmp_path / "topk" / "cfg.json").read_text())

    assert relu_cfg["architecture"] == "standard"
    assert "k" not in relu_cfg
    assert topk_cfg["architecture"] == "topk"
    assert topk_cfg["k"] == 5
    assert relu_cfg["d_in"] == 12
    assert relu_cfg["d_sae"] == 40
    assert relu_cfg["dtype"] == "float32"
    assert relu_cfg["normalize_activations"] == "none"
    assert relu_cfg["apply_b_dec_to_input"] is True
    assert relu_cfg["hook_name"] == "blocks.6.hook_resid_post"
    assert relu_cfg["metadata"] == {
        "model_name": "SmolLM2-135M-Instruct",
        "hook_name": "blocks.6.hook_resid_post",
        "training_tokens": 1000,
    }
    assert sorted(load_file(str(tmp_path / "relu" / WEIGHTS))) == [
        "W_dec",
        "W_enc",
        "b_dec",
        "b_enc",
    ]


def test_load_casts_to_requested_dtype(tmp_path: Path) -> None:
    sae = make_sae("topk", "bfloat16")
    save_sae(sae, tmp_path / "sae")
    loaded = load_sae(tmp_path / "sae", dtype="float32")

    assert loaded.cfg.dtype == "float32"
    assert loaded.W_enc.dtype == torch.float32
    assert torch.equal(loaded.W_dec, sae.W_dec.float())


def test_tampered_shape_raises(tmp_path: Path) -> None:
    save_sae(make_sae(), tmp_path / "sae")
    rewrite_weights(tmp_path / "sae", lambda t: t.update(W_enc=t["W_enc"].T.contiguous()))

    with pytest.raises(ValueError, match=r"'W_enc' has shape \(40, 12\), expected \(12, 40\)"):
        load_sae(tmp_path / "sae")


def test_missing_key_raises(tmp_path: Path) -> None:
    save_sae(make_sae(), tmp_path / "sae")
    rewrite_weights(tmp_path / "sae", lambda t: t.pop("b_enc"))

    with pytest.raises(ValueError, match=r"missing \['b_enc'\]") as error:
        load_sae(tmp_path / "sae")
    assert WEIGHTS in str(error.value)


def test_extra_key_raises(tmp_path: Path) -> None:
    save_sae(make_sae(), tmp_path / "sae")
    rewrite_weights(tmp_path / "sae", lambda t: t.update(threshold=torch.zeros(40)))

    with pytest.raises(ValueError, match=r"unexpected \['threshold'\]"):
        load_sae(tmp_path / "sae")


def test_dtype_mismatch_raises(tmp_path: Path) -> None:
    save_sae(make_sae(dtype="float32"), tmp_path / "sae")
    rewrite_weights(tmp_path / "sae", lambda t: t.update(b_dec=t["b_dec"].bfloat16()))

    with pytest.raises(
        ValueError, match=r"'b_dec' has dtype torch.bfloat16, expected torch.float32"
    ):
        load_sae(tmp_path / "sae")


def test_unknown_architecture_raises(tmp_path: Path) -> None:
    save_sae(make_sae(), tmp_path / "sae")
    rewrite_cfg(tmp_path / "sae", lambda values: values.update(architecture="transcoder"))

    with pytest.raises(ValueError, match=r"architecture 'transcoder' is not supported"):
        load_sae(tmp_path / "sae")


def test_unknown_cfg_key_raises(tmp_path: Path) -> None:
    save_sae(make_sae(), tmp_path / "sae")
    rewrite_cfg(tmp_path / "sae", lambda values: values.update(rescale_acts_by_decoder_norm=True))

    with pytest.raises(ValueError, match=r"unknown keys \['rescale_acts_by_decoder_norm'\]"):
        load_sae(tmp_path / "sae")


def test_unfolded_normalisation_raises(tmp_path: Path) -> None:
    save_sae(make_sae(), tmp_path / "sae")
    rewrite_cfg(
        tmp_path / "sae",
        lambda values: values.update(normalize_activations="expected_average_only_in"),
    )

    with pytest.raises(ValueError, match=r"normalize_activations='expected_average_only_in'"):
        load_sae(tmp_path / "sae")


def test_conflicting_hook_names_raise(tmp_path: Path) -> None:
    save_sae(make_sae(), tmp_path / "sae")
    rewrite_cfg(
        tmp_path / "sae", lambda values: values.update(hook_name="blocks.7.hook_resid_post")
    )

    with pytest.raises(ValueError, match=r"hook_name is 'blocks.7.hook_resid_post' at the top"):
        load_sae(tmp_path / "sae")


def test_metadata_only_names_load(tmp_path: Path) -> None:
    save_sae(make_sae(), tmp_path / "sae")

    def keep_names_in_metadata_only(values: dict) -> None:
        del values["hook_name"]
        del values["model_name"]

    rewrite_cfg(tmp_path / "sae", keep_names_in_metadata_only)

    loaded = load_sae(tmp_path / "sae")
    assert loaded.cfg.hook_name == "blocks.6.hook_resid_post"
    assert loaded.cfg.model_name == "SmolLM2-135M-Instruct"


@pytest.mark.parametrize("missing", ["cfg.json", WEIGHTS])
def test_missing_file_raises(tmp_path: Path, missing: str) -> None:
    save_sae(make_sae(), tmp_path / "sae")
    (tmp_path / "sae" / missing).unlink()

    with pytest.raises(FileNotFoundError, match=missing) as error:
        load_sae(tmp_path / "sae")
    assert str(tmp_path / "sae") in str(error.value)
    assert "cfg.json and sae_weights.safetensors" in str(error.value)


def test_failed_save_leaves_no_folder(tmp_path: Path) -> None:
    # The weights are written before cfg.json, so this fails midway through the save.
    with pytest.raises(TypeError):
        save_sae(make_sae(), tmp_path / "sae", extra={"tokenizer": object()})

    assert not (tmp_path / "sae").exists()
    assert leftover_temporary_folders(tmp_path) == []


def test_failed_overwrite_keeps_old_sae(tmp_path: Path) -> None:
    old = make_sae()
    save_sae(old, tmp_path / "sae")

    with pytest.raises(TypeError):
        save_sae(make_sae(), tmp_path / "sae", extra={"tokenizer": object()})

    assert torch.equal(load_sae(tmp_path / "sae").W_enc, old.W_enc)
    assert leftover_temporary_folders(tmp_path) == []


def test_overwrite_replaces_sae(tmp_path: Path) -> None:
    save_sae(make_sae("relu"), tmp_path / "sae")
    new = make_sae("topk")
    save_sae(new, tmp_path / "sae")

    loaded = load_sae(tmp_path / "sae")
    assert loaded.cfg.architecture == "topk"
    assert torch.equal(loaded.W_enc, new.W_enc)
    assert leftover_temporary_folders(tmp_path) == []


def test_save_rejects_folder_with_other_files(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text("{}\n")

    with pytest.raises(FileExistsError, match="metrics.jsonl"):
        save_sae(make_sae(), tmp_path / "run")
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == "{}\n"


@pytest.mark.parametrize("bad_value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_weight_raises(tmp_path: Path, bad_value: float) -> None:
    save_sae(make_sae(), tmp_path / "sae")

    def spoil(tensors: dict[str, torch.Tensor]) -> None:
        tensors["W_dec"][3, 5] = bad_value

    rewrite_weights(tmp_path / "sae", spoil)
    with pytest.raises(
        ValueError, match=r"sae_weights\.safetensors: tensor 'W_dec' contains 1 NaN"
    ):
        load_sae(tmp_path / "sae")


def test_cfg_value_of_wrong_type_raises(tmp_path: Path) -> None:
    save_sae(make_sae(), tmp_path / "sae")
    rewrite_cfg(tmp_path / "sae", lambda values: values.update(k="eight"))

    with pytest.raises(ValueError, match=r"cfg\.json: k='eight' is invalid: it must be an integer"):
        load_sae(tmp_path / "sae")
