"""evaluate_sae on a tiny real Llama host, against slow per-token reference loops."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from saehooks.evaluation.evaluate import EvalResult, evaluate_sae, format_table, write_metrics
from saehooks.hosts import TransformerLensHost
from saehooks.sae import SAEConfig, SparseAutoencoder

HOOK = "blocks.1.hook_resid_post"
VOCAB = ["<unk>", "<bos>", "<eos>"] + [f"t{i}" for i in range(45)]
BOS = 1
D_MODEL = 32


@pytest.fixture(scope="module")
def host(tiny_host: TransformerLensHost) -> TransformerLensHost:
    """The shared tiny Llama host (d_model 32); token ids here stay below its vocabulary of 64."""
    return tiny_host


def token_batches() -> list[torch.Tensor]:
    """Two batches that differ in batch size and context length, BOS at position 0."""
    generator = torch.Generator().manual_seed(11)
    batches = []
    for batch, length in ((3, 9), (2, 6)):
        tokens = torch.randint(3, len(VOCAB), (batch, length), generator=generator)
        tokens[:, 0] = BOS
        batches.append(tokens)
    return batches


def random_topk_sae() -> SparseAutoencoder:
    sae = SparseAutoencoder(SAEConfig(d_in=D_MODEL, d_sae=40, architecture="topk", k=4))
    with torch.no_grad():
        sae.b_enc.normal_(0.0, 0.1)
        sae.b_dec.normal_(0.0, 0.1)
    return sae


def identity_sae() -> SparseAutoencoder:
    """A ReLU SAE that reconstructs exactly: latents relu(x) and relu(−x), decoded as their
    difference, which equals x because one of the two is always zero."""
    sae = SparseAutoencoder(SAEConfig(d_in=D_MODEL, d_sae=2 * D_MODEL, architecture="relu", k=None))
    eye = torch.eye(D_MODEL)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], dim=1))  # [d_in, 2 d_in]
        sae.W_dec.copy_(torch.cat([eye, -eye], dim=0))  # [2 d_in, d_in]
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


# -- slow references ---------------------------------------------------------------------------


def slow_cross_entropy_sum(logits: torch.Tensor, tokens: torch.Tensor) -> tuple[float, int]:
    """Sum and count of next-token losses for predictions at positions 1 .. T-2."""
    total, count = 0.0, 0
    for b in range(tokens.shape[0]):
        for t in range(1, tokens.shape[1] - 1):
            log_probs = torch.log_softmax(logits[b, t].double(), dim=-1)
            total -= log_probs[tokens[b, t + 1]].item()
            count += 1
    return total, count


def slow_kl_sum(clean: torch.Tensor, spliced: torch.Tensor) -> float:
    total = 0.0
    for b in range(clean.shape[0]):
        for t in range(1, clean.shape[1] - 1):
            p = torch.softmax(clean[b, t].double(), dim=-1)
            q = torch.softmax(spliced[b, t].double(), dim=-1)
            total += (p * (p / q).log()).sum().item()
    return total


def replace_after_bos(function):
    """A splice function that leaves position 0 itself, for use with skip_bos=False."""

    def replace(activation: torch.Tensor) -> torch.Tensor:
        rest = function(activation[:, 1:])  # [B, T-1, d]
        return torch.cat([activation[:, :1], rest.to(activation.dtype)], dim=1)

    return replace


def slow_reference(host: TransformerLensHost, sae: SparseAutoencoder, batches) -> dict:
    """Every metric, computed token by token without the code under test."""
    activations: list[torch.Tensor] = []
    ce_sums = {"clean": 0.0, "spliced": 0.0, "zero": 0.0}
    n_predictions = 0
    kl_sum = 0.0
    for tokens in batches:
        x = host.harvest(tokens, [HOOK])[HOOK]  # [B, T, d]
        activations.extend(x[b, t] for b in range(x.shape[0]) for t in range(1, x.shape[1]))

        clean = host.logits(tokens)
        with torch.no_grad(), host.splice({HOOK: replace_after_bos(sae)}, skip_bos=False):
            spliced = host.logits(tokens)
        with host.splice({HOOK: replace_after_bos(torch.zeros_like)}, skip_bos=False):
            zero = host.logits(tokens)
        for name, logits in (("clean", clean), ("spliced", spliced), ("zero", zero)):
            total, count = slow_cross_entropy_sum(logits, tokens)
            ce_sums[name] += total
        n_predictions += count
        kl_sum += slow_kl_sum(clean, spliced)

    x = torch.stack(activations).double()  # [n, d]
    with torch.no_grad():
        acts = sae.encode(x.float())  # [n, d_sae]
        x_hat = sae.decode(acts).double()  # [n, d]
    mean = x.mean(dim=0)
    squared_error = sum(((x[i] - x_hat[i]) ** 2).sum().item() for i in range(len(x)))
    total_variance = sum(((x[i] - mean) ** 2).sum().item() for i in range(len(x)))
    nonzero = sum(int((acts[i] != 0).sum()) for i in range(len(acts)))
    dead = sum(int(not (acts[:, j] != 0).any()) for j in range(acts.shape[1]))
    dense = sum(int((acts[:, j] != 0).double().mean() > 0.1) for j in range(acts.shape[1]))
    ce = {name: total / n_predictions for name, total in ce_sums.items()}
    return {
        "fvu": squared_error / total_variance,
        "l0": nonzero / len(acts),
        "dead_fraction": dead / acts.shape[1],
        "dense_fraction": dense / acts.shape[1],
        "ce_loss_clean": ce["clean"],
        "ce_loss_spliced": ce["spliced"],
        "ce_loss_zero": ce["zero"],
        "ce_loss_recovered": (ce["zero"] - ce["spliced"]) / (ce["zero"] - ce["clean"]),
        "kl_div": kl_sum / n_predictions,
        "n_tokens": len(x),
        "fvu_with_bos": _fvu_with_bos(host, sae, batches),
    }


def _fvu_with_bos(host: TransformerLensHost, sae: SparseAutoencoder, batches) -> float:
    x = torch.cat([host.harvest(t, [HOOK])[HOOK].reshape(-1, D_MODEL) for t in batches]).double()
    with torch.no_grad():
        x_hat = sae(x.float()).double()
    return ((x - x_hat) ** 2).sum().item() / ((x - x.mean(dim=0)) ** 2).sum().item()


# -- evaluate_sae ------------------------------------------------------------------------------


def test_evaluate_matches_slow_reference(host: TransformerLensHost) -> None:
    sae = random_topk_sae()
    batches = token_batches()
    result = evaluate_sae(host, sae, iter(batches), HOOK)
    expected = slow_reference(host, sae, batches)

    keys = ("fvu", "l0", "dead_fraction", "dense_fraction", "ce_loss_clean", "ce_loss_spliced")
    for key in (*keys, "ce_loss_zero"):
        assert getattr(result, key) == pytest.approx(expected[key], rel=1e-5), key
    assert 0.0 < result.dense_fraction < 1.0
    assert result.ce_loss_recovered == pytest.approx(expected["ce_loss_recovered"], rel=1e-4)
    assert result.kl_div == pytest.approx(expected["kl_div"], rel=1e-4, abs=1e-7)
    assert result.n_tokens == expected["n_tokens"] == 3 * 8 + 2 * 5
    # The reference is sensitive to BOS: including it would change FVU noticeably.
    assert abs(expected["fvu_with_bos"] - expected["fvu"]) > 1e-3


def test_identity_sae_recovers_all(host: TransformerLensHost) -> None:
    result = evaluate_sae(host, identity_sae(), token_batches(), HOOK)

    assert result.fvu == 0.0
    assert result.ce_loss_spliced == pytest.approx(result.ce_loss_clean, abs=1e-6)
    assert result.ce_loss_recovered == pytest.approx(1.0, abs=1e-6)
    assert result.kl_div == pytest.approx(0.0, abs=1e-6)
    # A random model need not get worse when zero-ablated, but it must change.
    assert result.ce_loss_zero != pytest.approx(result.ce_loss_clean, abs=1e-3)
    assert result.dead_fraction == 0.0


def test_identity_sae_l0_counts_nonzero_coordinates(host: TransformerLensHost) -> None:
    batches = token_batches()
    result = evaluate_sae(host, identity_sae(), batches, HOOK)

    x = torch.cat([host.harvest(t, [HOOK])[HOOK][:, 1:].reshape(-1, D_MODEL) for t in batches])
    assert result.l0 == pytest.approx((x != 0).sum().item() / x.shape[0])


def test_evaluate_bfloat16_sae_runs(host: TransformerLensHost) -> None:
    sae = SparseAutoencoder(
        SAEConfig(d_in=D_MODEL, d_sae=24, architecture="topk", k=3, dtype="bfloat16")
    )
    result = evaluate_sae(host, sae, token_batches(), HOOK)

    assert math.isfinite(result.fvu)
    assert result.l0 == pytest.approx(3.0, abs=0.5)


def test_evaluate_leaves_no_splice(host: TransformerLensHost) -> None:
    tokens = token_batches()[0]
    before = host.logits(tokens)
    evaluate_sae(host, random_topk_sae(), [tokens], HOOK)

    assert torch.equal(host.logits(tokens), before)


def test_evaluate_rejects_empty_batches(host: TransformerLensHost) -> None:
    with pytest.raises(ValueError, match="token_batches is empty"):
        evaluate_sae(host, random_topk_sae(), [], HOOK)


def test_evaluate_rejects_short_contexts(host: TransformerLensHost) -> None:
    tokens = torch.full((2, 2), BOS)
    with pytest.raises(ValueError, match=r"T >= 3, got \(2, 2\)"):
        evaluate_sae(host, random_topk_sae(), [tokens], HOOK)


# -- output ------------------------------------------------------------------------------------

RESULT = EvalResult(
    fvu=0.25,
    l0=32.0,
    ce_loss_clean=3.0,
    ce_loss_spliced=3.2,
    ce_loss_zero=8.0,
    ce_loss_recovered=0.96,
    kl_div=0.15,
    dead_fraction=0.005,
    dense_fraction=0.0125,
    dense_threshold=0.1,
    n_tokens=24_000,
)


def test_write_metrics_keys_and_values(tmp_path: Path) -> None:
    path = write_metrics(RESULT, tmp_path / "run" / "metrics.json")

    values = json.loads(path.read_text())
    assert list(values) == [
        "fvu",
        "l0",
        "ce_loss_clean",
        "ce_loss_spliced",
        "ce_loss_zero",
        "ce_loss_recovered",
        "kl_div",
        "dead_fraction",
        "dense_fraction",
        "dense_threshold",
        "n_tokens",
    ]
    assert values["ce_loss_recovered"] == 0.96
    assert values["n_tokens"] == 24_000
    assert sorted(p.name for p in path.parent.iterdir()) == ["metrics.json"]


def test_write_metrics_nan_becomes_null(tmp_path: Path) -> None:
    result = EvalResult(**{**RESULT.to_dict(), "ce_loss_recovered": math.nan})
    path = write_metrics(result, tmp_path / "metrics.json")

    assert json.loads(path.read_text())["ce_loss_recovered"] is None


def test_format_table_lists_every_metric() -> None:
    table = format_table(RESULT)
    lines = table.splitlines()

    assert len(lines) == 10
    assert lines[0].split() == ["FVU", "0.2500"]
    assert "CE loss recovered" in table
    assert "0.9600" in table
    assert "0.50%" in table
    assert "1.25%" in table
    assert "24,000" in table
