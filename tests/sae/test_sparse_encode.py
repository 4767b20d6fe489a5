"""Sparse encoder gradients and trackers that read the latent selection, against the dense pass."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from saehooks.sae import SAEConfig, SparseAutoencoder, build_sae
from saehooks.sae.sparse_autoencoder import selection_observers
from saehooks.sae.sparse_decode import LatentSelection, selected_pre_acts
from saehooks.trackers import (
    BatchTopKThreshold,
    FireCounter,
    FiringEMA,
    L0Tracker,
    WindowedFireCounter,
)
from saehooks.trackers.frequency import fires_per_latent

D_IN, D_SAE, K, N = 7, 13, 3, 11


def make_sae(architecture: str = "topk") -> SparseAutoencoder:
    torch.manual_seed(5)
    cfg = SAEConfig(
        d_in=D_IN,
        d_sae=D_SAE,
        architecture=architecture,
        k=K,
        dtype="float64",
        matryoshka_widths=(4, D_SAE) if architecture == "matryoshka" else None,
    )
    sae = build_sae(cfg)
    with torch.no_grad():
        sae.b_enc.normal_()
        sae.b_dec.normal_()
    sae.decode_mode = "sparse"
    return sae


def test_selected_pre_acts_gradients_hand_computed() -> None:
    # Two tokens, three latents; token 0 keeps latents 0 and 2, token 1 keeps latent 1.
    centred = torch.tensor([[1.0, 2.0], [3.0, -1.0]], dtype=torch.float64, requires_grad=True)
    W_enc = torch.tensor(
        [[1.0, 0.5, -1.0], [2.0, 1.0, 0.0]], dtype=torch.float64, requires_grad=True
    )
    b_enc = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64, requires_grad=True)
    selection = LatentSelection(
        values=torch.zeros(3, dtype=torch.float64),  # not read by selected_pre_acts
        indices=torch.tensor([0, 2, 1]),
        positions=torch.tensor([0, 2, 4]),
        row_starts=torch.tensor([0, 2, 3]),
    )
    raw = torch.tensor([5.1, -0.7, 0.7], dtype=torch.float64)  # the pre-acts at those latents
    out = selected_pre_acts(raw, centred, W_enc, b_enc, selection)
    assert out.tolist() == raw.tolist()
    upstream = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    (out * upstream).sum().backward()
    # d/d centred[0] = 1 * W_enc[:, 0] + 2 * W_enc[:, 2] = (1 - 2, 2 + 0);
    # d/d centred[1] = 3 * W_enc[:, 1].
    assert centred.grad.tolist() == [[-1.0, 2.0], [1.5, 3.0]]
    # d/d W_enc[:, j] = sum of upstream * centred over the tokens that keep latent j.
    assert W_enc.grad.tolist() == [[1.0, 9.0, 2.0], [2.0, -3.0, 4.0]]
    assert b_enc.grad.tolist() == [1.0, 3.0, 2.0]


@pytest.mark.parametrize("architecture", ["topk", "batchtopk", "matryoshka"])
def test_pre_acts_hook_keeps_dense_gradients(architecture: str) -> None:
    x = torch.randn(N, D_IN, dtype=torch.float64)
    upstream = torch.randn(N, D_IN, dtype=torch.float64)
    grads = {}
    seen: list[torch.Tensor] = []
    for hooked in (False, True):
        sae = make_sae(architecture)
        if hooked:
            sae.hook_pre_acts.register_forward_hook(lambda m, i, out: seen.append(out))
        assert sae._encodes_sparsely() is not hooked
        (sae(x) * upstream).sum().backward()
        grads[hooked] = {name: p.grad.clone() for name, p in sae.named_parameters()}
    assert len(seen) == 1
    assert seen[0].shape == (N, D_SAE)
    assert seen[0].requires_grad
    for name, grad in grads[False].items():
        assert_close(grad, grads[True][name], msg=name)


def test_selection_observers_only_when_every_hook_reads_selections() -> None:
    sae = make_sae()
    assert selection_observers(sae.hook_acts) == []
    counter = FireCounter(D_SAE)
    counter.attach(sae, "fires")
    assert selection_observers(sae.hook_acts) == [counter]
    handle = sae.hook_acts.register_forward_hook(lambda m, i, out: None)
    assert selection_observers(sae.hook_acts) is None
    handle.remove()
    assert selection_observers(sae.hook_acts) == [counter]


def test_fires_per_latent_hand_computed() -> None:
    # Token 0 keeps latents 1 (0.5) and 3 (0.0, not a fire); token 1 keeps 1 and 2.
    selection = LatentSelection(
        values=torch.tensor([0.5, 0.0, 2.0, 1.0]),
        indices=torch.tensor([1, 3, 1, 2]),
        positions=torch.tensor([1, 3, 5, 6]),
        row_starts=torch.tensor([0, 2, 4]),
    )
    assert fires_per_latent(selection, 4).tolist() == [0, 2, 1, 0]
    assert fires_per_latent(selection, 4, 1, 2).tolist() == [0, 1, 1, 0]
    assert fires_per_latent(selection, 4, 0, 1).tolist() == [0, 1, 0, 0]


def tracker_states(sae: SparseAutoencoder) -> dict[str, object]:
    states: dict[str, object] = {"l0": sae.trackers["l0"].l0}
    for name, tracker in sae.trackers.items():
        for buffer_name, buffer in tracker.named_buffers():
            states[f"{name}.{buffer_name}"] = buffer.clone()
    return states


@pytest.mark.parametrize("architecture", ["topk", "batchtopk"])
def test_trackers_read_selections_as_they_read_dense_latents(architecture: str) -> None:
    # Batches of 11 tokens into windows of 4 buckets of 5 tokens: batches straddle buckets.
    batches = [torch.randn(N, D_IN, dtype=torch.float64) for _ in range(4)]
    states = {}
    for mode in ("selection", "dense"):
        sae = make_sae(architecture)
        trackers = {
            "l0": L0Tracker(),
            "fires": FireCounter(D_SAE),
            "window": WindowedFireCounter(D_SAE, window_tokens=20, n_buckets=4),
            "ema": FiringEMA(D_SAE, time_constant_tokens=7),
        }
        if architecture == "batchtopk":
            trackers["threshold"] = BatchTopKThreshold()
        for name, tracker in trackers.items():
            tracker.attach(sae, name)
        if mode == "dense":
            # A hook that reads the dense latents makes every tracker read them too.
            sae.hook_acts.register_forward_hook(lambda m, i, out: None)
        assert (selection_observers(sae.hook_acts) is None) == (mode == "dense")
        for x in batches:
            sae(x)
        states[mode] = tracker_states(sae)
        states[mode]["sae.threshold"] = float(getattr(sae, "threshold", 0.0))
    assert int(states["dense"]["fires.tokens"]) == 4 * N
    assert states["dense"]["fires.fires"].sum() > 0
    for name, value in states["dense"].items():
        if isinstance(value, float):
            assert states["selection"][name] == pytest.approx(value), name
        else:
            assert_close(states["selection"][name], value, msg=name)
