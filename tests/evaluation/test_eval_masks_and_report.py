"""Evaluation on real tokens only, on both hosts, and its pictures and report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from saehooks.cli import build_parser
from saehooks.evaluation import (
    SparsityAccumulator,
    TokenBatch,
    next_token_mask,
    real_token_mask,
    run_evaluation,
    write_report,
)
from saehooks.hosts import NNsightHost, TransformerLensHost
from saehooks.sae import SAEConfig, SparseAutoencoder

HOOK = "blocks.1.hook_resid_post"
BOS, PAD = 1, 2
D_MODEL = 32


def padded_batch() -> TokenBatch:
    """Two contexts of 7 positions: 6 real tokens after BOS, and 3 real tokens then 3 pads."""
    tokens = torch.tensor(
        [
            [BOS, 10, 11, 12, 13, 14, 15],
            [BOS, 20, 21, 22, PAD, PAD, PAD],
        ]
    )
    attention_mask = torch.tensor([[1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0, 0]])
    return TokenBatch(tokens, attention_mask)


def random_sae() -> SparseAutoencoder:
    sae = SparseAutoencoder(SAEConfig(d_in=D_MODEL, d_sae=40, architecture="relu", k=None))
    with torch.no_grad():
        sae.b_enc.normal_(0.0, 0.1)
        sae.b_dec.normal_(0.0, 0.1)
    return sae


# -- masks, by hand ----------------------------------------------------------------------------


def test_real_token_mask_hand_values() -> None:
    batch = padded_batch()
    mask = real_token_mask(batch.tokens, [BOS], batch.attention_mask)

    assert mask.tolist() == [
        [False, True, True, True, True, True, True],
        [False, True, True, True, False, False, False],
    ]
    # The pad id alone marks the same positions as the attention mask.
    assert torch.equal(real_token_mask(batch.tokens, [BOS, PAD]), mask)


def test_next_token_mask_aligns_with_shift() -> None:
    mask = real_token_mask(padded_batch().tokens, [BOS, PAD])
    scored = next_token_mask(mask)  # [B, T-2]: entry i is the prediction at i+1 for token i+2

    assert scored.tolist() == [
        [True, True, True, True, True],
        [True, True, False, False, False],
    ]


def test_dense_fraction_and_l0_counts_hand_values() -> None:
    # Four latents over five tokens. Latent 0 fires on 3/5 tokens, latent 1 on 1/5, latent 2 on
    # 0/5, latent 3 on 5/5. Above 0.5: latents 0 and 3; above 0.2 (strictly): 0 and 3 as well.
    acts = torch.tensor(
        [
            [1.0, 0.0, 0.0, 2.0],
            [1.0, 3.0, 0.0, 2.0],
            [1.0, 0.0, 0.0, 2.0],
            [0.0, 0.0, 0.0, 2.0],
            [0.0, 0.0, 0.0, 2.0],
        ]
    )
    accumulator = SparsityAccumulator(d_sae=4)
    accumulator.update(acts[:2])
    accumulator.update(acts[2:])

    assert accumulator.dense_fraction(0.5) == 0.5
    assert accumulator.dense_fraction(0.2) == 0.5
    assert accumulator.dense_fraction(0.1) == 0.75
    assert accumulator.dead_fraction() == 0.25
    # Tokens with 1, 2 and 3 active latents: 2, 2 and 1.
    assert accumulator.l0_counts.tolist() == [0, 2, 2, 1, 0]
    assert accumulator.l0() == pytest.approx((2 * 1 + 2 * 2 + 3) / 5)
    torch.testing.assert_close(
        accumulator.feature_density(), torch.tensor([0.6, 0.2, 0.0, 1.0], dtype=torch.float64)
    )


# -- evaluation on a padded batch --------------------------------------------------------------


def test_padded_batch_counts_real_tokens_only(tiny_host: TransformerLensHost) -> None:
    batch = padded_batch()
    sae = random_sae()
    evaluation = run_evaluation(tiny_host, sae, [batch], HOOK, special_token_ids=[BOS])
    result = evaluation.result

    x_all = tiny_host.harvest(batch.tokens, [HOOK])[HOOK]  # [2, 7, d]
    real = [(0, t) for t in range(1, 7)] + [(1, t) for t in range(1, 4)]
    x = torch.stack([x_all[b, t] for b, t in real]).double()  # [9, d]
    with torch.no_grad():
        acts = sae.encode(x.float())
        x_hat = sae.decode(acts).double()
    squared_error = ((x - x_hat) ** 2).sum().item()
    total_variance = ((x - x.mean(dim=0)) ** 2).sum().item()

    assert result.n_tokens == 9
    assert result.l0 == pytest.approx((acts != 0).sum().item() / 9)
    assert result.fvu == pytest.approx(squared_error / total_variance, rel=1e-5)
    assert int(evaluation.l0_counts.sum()) == 9

    # Clean CE over the five predictions whose position and target are both real.
    logits = tiny_host.logits(batch.tokens)
    predictions = [(0, t) for t in range(1, 6)] + [(1, 1), (1, 2)]
    losses = [
        F.cross_entropy(logits[b, t][None].double(), batch.tokens[b, t + 1][None]).item()
        for b, t in predictions
    ]
    assert result.ce_loss_clean == pytest.approx(sum(losses) / len(losses), rel=1e-5)


def test_hosts_give_same_evaluation(tiny_host: TransformerLensHost, tiny_model_dir: Path) -> None:
    nnsight_host = NNsightHost.load(str(tiny_model_dir))
    batch = padded_batch()
    sae = random_sae()
    tl_result = run_evaluation(tiny_host, sae, [batch], HOOK).result.to_dict()
    nnsight_result = run_evaluation(nnsight_host, sae, [batch], HOOK).result.to_dict()

    for key, value in tl_result.items():
        assert nnsight_result[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key


# -- pictures and report -----------------------------------------------------------------------


def test_write_report_draws_both_histograms(tiny_host: TransformerLensHost, tmp_path: Path) -> None:
    evaluation = run_evaluation(tiny_host, random_sae(), [padded_batch()], HOOK)
    files = write_report(evaluation, tmp_path, "relu SAE")

    assert [p.name for p in files.pictures] == ["feature_density.png", "l0_histogram.png"]
    for picture in files.pictures:
        assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = files.report.read_text()
    assert report.startswith("# Evaluation of relu SAE")
    assert "more than 10% of tokens" in report
    assert "](feature_density.png)" in report
    assert "9 real tokens" in report
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["feature_density.png", "l0_histogram.png", "report.md"]
    )


def test_metrics_json_keeps_keys_and_adds_dense(tiny_host: TransformerLensHost, tmp_path):
    from saehooks.evaluation import write_metrics

    result = run_evaluation(tiny_host, random_sae(), [padded_batch()], HOOK).result
    values = json.loads(write_metrics(result, tmp_path / "metrics.json").read_text())

    for key in ("fvu", "l0", "ce_loss_recovered", "kl_div", "dead_fraction", "n_tokens"):
        assert key in values
    assert values["dense_threshold"] == 0.1
    assert math.isfinite(values["dense_fraction"])


def test_cli_eval_accepts_backend() -> None:
    args = build_parser().parse_args(["eval", "runs/x", "--backend", "nnsight"])
    assert args.backend == "nnsight"
    assert build_parser().parse_args(["eval", "runs/x"]).backend == "transformer_lens"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["eval", "runs/x", "--backend", "jax"])
