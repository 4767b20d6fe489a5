"""The pretrained registry: the shipped index, custom indexes, hub entries and the CLI table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from saehooks import pretrained
from saehooks.cli import main
from saehooks.io import save_sae
from saehooks.sae import SAEConfig, build_sae

SHIPPED_MAX_BYTES = 15 * 2**20


def test_shipped_index_lists_loadable_saes() -> None:
    entries = pretrained.read_index()
    shipped = [entry for entry in entries if "path" in entry.weights]
    assert len(shipped) >= 2
    for entry in shipped:
        folder = pretrained.index_path().parent / entry.weights["path"]
        size = sum(path.stat().st_size for path in folder.iterdir())
        assert size <= SHIPPED_MAX_BYTES, entry.id
        sae = pretrained.load(entry.id)
        assert sae.cfg.hook_name == entry.hook_name, entry.id
        assert sae.cfg.model_name == entry.model, entry.id
        assert sae.cfg.k == entry.k, entry.id
        assert sae.W_dec.dtype == torch.float16, entry.id
        assert 0.0 < entry.metrics["fvu"] < 1.0, entry.id
        assert 0.0 < entry.metrics["ce_loss_recovered"] <= 1.0, entry.id


def test_load_casts_to_requested_dtype() -> None:
    entry = pretrained.read_index()[0]
    sae = pretrained.load(entry.id, dtype="float32")
    assert sae.W_enc.dtype == torch.float32
    assert sae.cfg.dtype == "float32"


def make_entry(name: str, weights: dict, **changes) -> dict:
    entry = {
        "id": name,
        "model": "tiny",
        "hook_name": "blocks.1.hook_resid_post",
        "architecture": "topk",
        "k": 2,
        "d_in": 4,
        "d_sae": 6,
        "training_tokens": 1000,
        "metrics": {"l0": 2.0, "fvu": 0.5, "ce_loss_recovered": 0.5},
        "weights": weights,
    }
    return {**entry, **changes}


def write_index(folder: Path, entries: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "index.json"
    path.write_text(json.dumps({"dictionaries": entries}))
    return path


@pytest.fixture()
def tiny_sae():
    torch.manual_seed(0)
    return build_sae(SAEConfig(d_in=4, d_sae=6, k=2, hook_name="blocks.1.hook_resid_post"))


def write_sparsify_folder(folder: Path, sae) -> None:
    folder.mkdir(parents=True)
    cfg = {"activation": "topk", "num_latents": 6, "k": 2, "d_in": 4}
    (folder / "cfg.json").write_text(json.dumps(cfg))
    tensors = {
        "encoder.weight": sae.W_enc.detach().T.contiguous(),
        "encoder.bias": sae.b_enc.detach(),
        "W_dec": sae.W_dec.detach(),
        "b_dec": sae.b_dec.detach(),
    }
    save_file(tensors, str(folder / "sae.safetensors"))


def test_custom_index_with_path_entry(tmp_path: Path, tiny_sae, monkeypatch) -> None:
    save_sae(tiny_sae, tmp_path / "tiny")
    write_index(tmp_path, [make_entry("tiny", {"path": "tiny", "format": "saehooks"})])
    monkeypatch.setenv("SAEHOOKS_PRETRAINED", str(tmp_path))
    assert pretrained.index_path() == tmp_path / "index.json"
    sae = pretrained.load("tiny")
    assert torch.equal(sae.W_dec, tiny_sae.W_dec)
    with pytest.raises(KeyError, match="known ids: \\['tiny'\\]"):
        pretrained.load("missing")


def test_hub_entry_reads_cache(tmp_path: Path, tiny_sae, monkeypatch) -> None:
    revision = "a" * 40
    repo = tmp_path / "hub" / "models--org--tiny-saes"
    write_sparsify_folder(repo / "snapshots" / revision / "layers.1", tiny_sae)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    location = {"hub": "org/tiny-saes", "folder": "layers.1", "format": "sparsify"}
    index = write_index(tmp_path / "index", [make_entry("hubbed", location)])

    sae = pretrained.load("hubbed", index=index)
    assert sae.cfg.hook_name == "blocks.1.hook_resid_post"
    assert torch.equal(sae.W_enc, tiny_sae.W_enc)


def test_entry_disagreeing_with_weights_raises(tmp_path: Path, tiny_sae) -> None:
    save_sae(tiny_sae, tmp_path / "tiny")
    entry = make_entry("tiny", {"path": "tiny", "format": "saehooks"}, d_sae=7)
    index = write_index(tmp_path, [entry])
    with pytest.raises(ValueError, match="fix the index entry"):
        pretrained.load("tiny", index=index)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"colour": "red"}, "unknown keys \\['colour'\\]"),
        ({"weights": {"path": "x"}}, "needs weights with a 'format'"),
        ({"weights": {"path": "x", "hub": "o/r", "format": "saelens"}}, "exactly one of"),
        ({"metrics": {"l0": 1.0}}, "lacks metrics \\['fvu', 'ce_loss_recovered'\\]"),
    ],
)
def test_invalid_entries_raise(tmp_path: Path, changes: dict, message: str) -> None:
    entry = {**make_entry("bad", {"path": "bad", "format": "saehooks"}), **changes}
    with pytest.raises(ValueError, match=message):
        pretrained.read_index(write_index(tmp_path, [entry]))


def test_duplicate_ids_raise(tmp_path: Path) -> None:
    entry = make_entry("twice", {"path": "twice", "format": "saehooks"})
    with pytest.raises(ValueError, match="appear more than once"):
        pretrained.read_index(write_index(tmp_path, [entry, entry]))


def test_cli_lists_shipped_ids(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pretrained", "list"]) == 0
    output = capsys.readouterr().out
    for entry in pretrained.read_index():
        assert entry.id in output
    assert output.splitlines()[0].split()[:3] == ["id", "model", "hook"]
