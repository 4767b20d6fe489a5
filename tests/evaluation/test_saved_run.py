"""How ``evaluate_saved`` cuts held-out contexts to the requested token count."""

from __future__ import annotations

import pytest
import torch

from saehooks.evaluation.saved_run import context_lengths, count_batches, held_out_batches


@pytest.mark.parametrize(
    ("eval_tokens", "body_size", "expected"),
    [
        (2, 15, [2]),
        (14, 15, [14]),
        (15, 15, [15]),
        (16, 15, [14, 2]),  # a remainder of 1 cannot stand alone
        (17, 15, [15, 2]),
        (46, 15, [15, 15, 14, 2]),
        (37, 127, [37]),
        (2048, 127, [127] * 16 + [16]),
        (7, 2, [2, 2, 2]),  # with 2 tokens per context an odd count cannot be met
    ],
)
def test_context_lengths(eval_tokens: int, body_size: int, expected: list[int]) -> None:
    assert context_lengths(eval_tokens, body_size) == expected


def test_context_lengths_rejects_one_token_contexts() -> None:
    with pytest.raises(ValueError, match="context_size must be at least 3"):
        context_lengths(10, 1)


class FixedContexts:
    """A held-out split of ``count`` contexts ``[BOS, 100*i + 1, 100*i + 2, ...]``."""

    def __init__(self, count: int, context_size: int) -> None:
        self.rows = [
            torch.tensor([0, *range(100 * i + 1, 100 * i + context_size)]) for i in range(count)
        ]

    def contexts(self, split: str) -> list[torch.Tensor]:
        assert split == "eval"
        return self.rows


def test_held_out_batches_cut_and_group() -> None:
    stream = FixedContexts(count=6, context_size=6)  # 5 tokens after BOS
    lengths = context_lengths(21, 5)  # [5, 5, 5, 4, 2]
    batches = list(held_out_batches(stream, lengths, batch_size=2))  # type: ignore[arg-type]

    assert [tuple(batch.shape) for batch in batches] == [(2, 6), (1, 6), (1, 5), (1, 3)]
    assert len(batches) == count_batches(lengths, batch_size=2)
    assert batches[0][1].tolist() == [0, 101, 102, 103, 104, 105]
    assert batches[2][0].tolist() == [0, 301, 302, 303, 304]
    assert batches[3][0].tolist() == [0, 401, 402]
    assert sum(int(batch[:, 1:].numel()) for batch in batches) == 21


def test_held_out_batches_stop_with_the_split() -> None:
    stream = FixedContexts(count=2, context_size=6)
    batches = list(held_out_batches(stream, [5, 5, 5], batch_size=8))  # type: ignore[arg-type]
    assert [tuple(batch.shape) for batch in batches] == [(2, 6)]
