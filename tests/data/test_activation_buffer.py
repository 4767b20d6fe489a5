"""ActivationBuffer serves every activation exactly once; activation_chunks drops BOS."""

from __future__ import annotations

import weakref
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from saehooks.data import ActivationBuffer, TokenStream, activation_chunks

D = 3


def id_rows(start: int, n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Rows ``[id, 2 * id, -id]`` for ids ``start .. start + n - 1``, shape ``[n, 3]``."""
    ids = torch.arange(start, start + n, dtype=dtype)
    return torch.stack([ids, 2 * ids, -ids], dim=1)


def chunked_source(sizes: list[int], pulled: list[int] | None = None) -> Iterator[torch.Tensor]:
    """Yield chunks of the given sizes with consecutive ids, counting rows pulled so far."""
    start = 0
    for size in sizes:
        start += size
        if pulled is not None:
            pulled.append(start)
        yield id_rows(start - size, size)


def served_ids(batches: list[torch.Tensor]) -> list[int]:
    return torch.cat(batches)[:, 0].long().tolist()


def test_buffer_serves_each_once():
    # 1,000 rows in uneven chunks (including an empty one) through capacity 64 and batch 10.
    sizes = [7, 13, 1, 0, 29, 64, 3, 100, 37] * 3 + [238]
    assert sum(sizes) == 1000
    buffer = ActivationBuffer(chunked_source(sizes), capacity=64, batch_size=10, d=D, seed=0)
    batches = list(buffer)

    ids = served_ids(batches)
    assert sorted(ids) == list(range(1000))
    assert buffer.num_served == 1000
    assert [b.shape[0] for b in batches] == [10] * 100
    # Rows stay whole, and batches served before a refill are not overwritten by it.
    rows = torch.cat(batches)
    torch.testing.assert_close(rows, id_rows(0, 1000)[rows[:, 0].long()])


def test_refill_after_half_served():
    # Capacity 10, batch 3, chunks of 4 rows. Rows pulled from the source, by hand:
    # batch 1: fill 10 rows from three chunks (12 pulled, 2 left over), then serve 3.
    # batch 2: 3 served < 5, so no refill. 6 served.
    # batch 3: 6 served >= 5, so refill those 6 rows from the 2 left over and one chunk
    #          (16 pulled, none left over). 3 served since the refill.
    # batch 4: 3 served < 5, so no refill. 6 served.
    # batch 5: 6 served >= 5, so refill 6 rows from two chunks (24 pulled, 2 left over).
    pulled: list[int] = []
    buffer = ActivationBuffer(chunked_source([4] * 6, pulled), capacity=10, batch_size=3, d=D)
    pulled_after_batch = []
    first_ids: set[int] = set()
    for i in range(5):
        first_ids |= set(next(buffer)[:, 0].long().tolist())
        pulled_after_batch.append(pulled[-1])
        if i == 1:
            assert first_ids <= set(range(10))
    assert pulled_after_batch == [12, 12, 16, 16, 24]


def test_source_dry_serves_rest_then_stops():
    buffer = ActivationBuffer(chunked_source([5, 9, 9]), capacity=10, batch_size=4, d=D)
    batches = list(buffer)
    assert [b.shape[0] for b in batches] == [4, 4, 4, 4, 4, 3]
    assert sorted(served_ids(batches)) == list(range(23))
    with pytest.raises(StopIteration):
        next(buffer)


def test_max_rows_stops_reading_the_source():
    # Chunks of 4 rows, at most 14 read: chunks 1 to 3 whole, 2 rows of chunk 4, and no chunk 5.
    pulled: list[int] = []
    buffer = ActivationBuffer(
        chunked_source([4] * 10, pulled), capacity=10, batch_size=3, d=D, max_rows=14
    )
    batches = list(buffer)
    assert sorted(served_ids(batches)) == list(range(14))
    assert [b.shape[0] for b in batches] == [3, 3, 3, 3, 2]
    assert pulled[-1] == 16
    with pytest.raises(ValueError, match="max_rows must be at least 1"):
        ActivationBuffer(chunked_source([4]), capacity=10, batch_size=3, d=D, max_rows=0)


def test_max_rows_releases_the_source():
    # A tee copy kept but unread would make itertools.tee store every later item for it.
    source = chunked_source([4] * 10)
    alive = weakref.ref(source)
    buffer = ActivationBuffer(source, capacity=10, batch_size=3, d=D, max_rows=14)
    del source
    assert alive() is not None
    assert len(list(buffer)) == 5
    assert alive() is None


def test_source_smaller_than_capacity():
    buffer = ActivationBuffer(chunked_source([2, 3]), capacity=10, batch_size=4, d=D)
    batches = list(buffer)
    assert [b.shape[0] for b in batches] == [4, 1]
    assert sorted(served_ids(batches)) == list(range(5))


def test_order_deterministic_for_seed():
    def order(seed: int) -> list[int]:
        source = chunked_source([30] * 10)
        return served_ids(list(ActivationBuffer(source, 50, 7, D, seed=seed)))

    assert order(0) == order(0)
    assert order(0) != order(1)
    assert order(0) != list(range(300))


def test_unserved_returns_first_fill():
    buffer = ActivationBuffer(chunked_source([6] * 5), capacity=16, batch_size=4, d=D)
    first_fill = buffer.unserved()
    assert sorted(first_fill[:, 0].long().tolist()) == list(range(16))

    batch = next(buffer)
    left = buffer.unserved()
    assert left.shape == (12, D)
    assert set(left[:, 0].long().tolist()).isdisjoint(batch[:, 0].long().tolist())


def test_buffer_dtype_and_inference_tensors():
    with torch.inference_mode():
        chunks = [id_rows(0, 6, torch.float64), id_rows(6, 6, torch.float64)]
    buffer = ActivationBuffer(iter(chunks), capacity=8, batch_size=4, d=D, dtype=torch.bfloat16)
    batches = list(buffer)
    assert all(b.dtype == torch.bfloat16 for b in batches)
    assert sorted(served_ids(batches)) == list(range(12))


@pytest.mark.parametrize("shape", [(4, D + 1), (4,), (2, 2, D)])
def test_wrong_chunk_shape_raises(shape):
    buffer = ActivationBuffer(iter([torch.zeros(shape)]), capacity=8, batch_size=4, d=D)
    with pytest.raises(ValueError, match=r"shape \[n, d=3\]"):
        next(buffer)


@pytest.mark.parametrize(
    ("capacity", "batch_size", "message"),
    [(1, 1, "capacity must be at least 2"), (8, 9, "batch_size must be in"), (8, 0, "batch_size")],
)
def test_invalid_sizes_raise(capacity, batch_size, message):
    with pytest.raises(ValueError, match=message):
        ActivationBuffer(iter([]), capacity=capacity, batch_size=batch_size, d=D)


# -- activation_chunks ------------------------------------------------------------------------


class EmbeddingHarvest:
    """A real harvest function: the activations are rows of an embedding table."""

    def __init__(self, vocab_size: int = 20, d: int = 4) -> None:
        self.embedding = nn.Embedding(vocab_size, d)

    @torch.inference_mode()
    def __call__(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"embed": self.embedding(tokens), "other": torch.zeros(1)}


def test_activation_chunks_drop_bos():
    harvest = EmbeddingHarvest()
    tokens = torch.tensor([[1, 5, 6, 7], [1, 8, 9, 10]])  # [B=2, T=4], BOS = 1 at position 0

    (chunk,) = list(activation_chunks([tokens], harvest, "embed"))
    assert chunk.shape == (6, 4)
    expected = harvest.embedding.weight[torch.tensor([5, 6, 7, 8, 9, 10])]
    torch.testing.assert_close(chunk, expected.detach())

    (with_bos,) = list(activation_chunks([tokens], harvest, "embed", drop_bos=False))
    torch.testing.assert_close(with_bos, harvest.embedding.weight[tokens.flatten()].detach())


def test_activation_chunks_unknown_hook():
    with pytest.raises(KeyError, match=r"'resid'.*\['embed', 'other'\]"):
        list(activation_chunks([torch.ones(1, 3, dtype=torch.long)], EmbeddingHarvest(), "resid"))


def test_activation_chunks_shape_mismatch_raises():
    def harvest(tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"embed": torch.zeros(tokens.shape[0], tokens.shape[1] + 1, 4)}

    with pytest.raises(ValueError, match=r"shape \(2, 4, 4\).*\(2, 3\)"):
        list(activation_chunks([torch.ones(2, 3, dtype=torch.long)], harvest, "embed"))


def test_pipeline_tokens_to_buffer(word_tokenizer):
    documents = [" ".join(f"w{(i + j) % 50}" for j in range(i % 11 + 1)) for i in range(200)]
    stream = TokenStream(documents, word_tokenizer, context_size=9, bos_token_id=1)
    harvest = EmbeddingHarvest(vocab_size=len(word_tokenizer), d=5)
    chunks = activation_chunks(stream.batches("train", 6), harvest, "embed")
    buffer = ActivationBuffer(chunks, capacity=100, batch_size=32, d=5)

    served = torch.cat(list(buffer))
    assert served.shape == (stream.num_contexts("train") * 8, 5)
    # No served row is the BOS embedding.
    bos_row = harvest.embedding.weight[1].detach()
    assert not (served == bos_row).all(dim=1).any()
