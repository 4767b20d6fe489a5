"""The sparse TopK decoder against the dense product, alone and inside SparseAutoencoder."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from saehooks.hosts.sae_splice import ablate_latents, clamp_latents, steer_latents
from saehooks.sae import (
    DeepConfig,
    HierarchicalConfig,
    MixtureConfig,
    SAEConfig,
    SparseAutoencoder,
    build_sae,
)
from saehooks.sae.sparse_decode import (
    decode_selection,
    prefers_sparse_decode,
    select_batch_topk,
    sparse_decode,
)
from saehooks.training.config import TrainingConfig
from saehooks.training.trainer import Trainer

D_IN, D_SAE, K = 7, 13, 3
LEADING = (2, 5)
DTYPES = [torch.float32, torch.float64]


ARCHITECTURES = ["topk", "batchtopk", "matryoshka"]


def make_sae(dtype: torch.dtype, decode_mode: str, architecture: str = "topk") -> SparseAutoencoder:
    torch.manual_seed(3)
    cfg = SAEConfig(
        d_in=D_IN,
        d_sae=D_SAE,
        architecture=architecture,
        k=K,
        dtype=str(dtype).removeprefix("torch."),
        matryoshka_widths=(4, D_SAE) if architecture == "matryoshka" else None,
    )
    sae = build_sae(cfg)
    with torch.no_grad():
        sae.b_enc.normal_()
        sae.b_dec.normal_()
    sae.decode_mode = decode_mode
    return sae


def gradients(module: torch.nn.Module, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    trained = {name: p for name, p in module.named_parameters() if p.requires_grad}
    grads = torch.autograd.grad(loss, list(trained.values()), allow_unused=True)
    return dict(zip(trained, grads, strict=True))


@pytest.mark.parametrize("dtype", DTYPES)
def test_sparse_decode_matches_dense(dtype: torch.dtype) -> None:
    pre_acts = torch.randn(*LEADING, D_SAE, dtype=dtype)
    top = pre_acts.topk(K, dim=-1, sorted=False)  # values and indices [2, 5, k]
    values = top.values.relu().requires_grad_(True)
    W_dec = torch.randn(D_SAE, D_IN, dtype=dtype, requires_grad=True)
    b_dec = torch.randn(D_IN, dtype=dtype, requires_grad=True)
    upstream = torch.randn(*LEADING, D_IN, dtype=dtype)  # a loss that weights every output

    acts = torch.zeros(*LEADING, D_SAE, dtype=dtype).scatter(-1, top.indices, values)
    dense = acts @ W_dec + b_dec  # [2, 5, d_in]
    dense_grads = torch.autograd.grad((dense * upstream).sum(), [values, W_dec, b_dec])
    sparse = sparse_decode(values, top.indices, W_dec, b_dec)
    sparse_grads = torch.autograd.grad((sparse * upstream).sum(), [values, W_dec, b_dec])

    tolerance = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {}
    assert sparse.shape == (*LEADING, D_IN)
    assert_close(sparse, dense, **tolerance)
    for name, sparse_grad, dense_grad in zip(
        ["values", "W_dec", "b_dec"], sparse_grads, dense_grads, strict=True
    ):
        assert_close(sparse_grad, dense_grad, **tolerance, msg=f"gradient of {name} differs")


def test_sparse_decode_hand_computed() -> None:
    W_dec = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])
    b_dec = torch.tensor([0.5, -0.5])
    values = torch.tensor([[2.0, 1.0]])
    indices = torch.tensor([[2, 0]])  # unsorted on purpose: 2 * [3, 4] + 1 * [1, 0] + b_dec
    assert_close(sparse_decode(values, indices, W_dec, b_dec), torch.tensor([[7.5, 7.5]]))


def test_sparse_decode_rejects_bad_indices() -> None:
    W_dec, b_dec = torch.randn(D_SAE, D_IN), torch.zeros(D_IN)
    with pytest.raises(ValueError, match="same shape"):
        sparse_decode(torch.ones(4, 3), torch.zeros(4, 2, dtype=torch.long), W_dec, b_dec)
    with pytest.raises(ValueError, match="same latent twice"):
        sparse_decode(torch.ones(1, 2), torch.tensor([[5, 5]]), W_dec, b_dec)


def test_batch_topk_selection_with_empty_token() -> None:
    pre_acts = torch.tensor([[5.0, 4.0, 3.0, 2.0, -1.0], [0.5, 0.1, 0.2, 0.3, 0.4]])
    selection = select_batch_topk(pre_acts, k=2)  # the 4 largest all lie in token 0
    assert selection.row_starts.tolist() == [0, 4, 4]
    assert selection.indices.tolist() == [0, 1, 2, 3]
    W_dec = torch.randn(5, 3, requires_grad=True)
    b_dec = torch.randn(3, requires_grad=True)
    x_hat = decode_selection(selection, W_dec, b_dec)
    assert_close(x_hat[0], pre_acts[0, :4] @ W_dec[:4] + b_dec)
    assert_close(x_hat[1], b_dec)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_gate", [False, True])
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_sae_forward_and_gradients_match_dense(
    dtype: torch.dtype, with_gate: bool, architecture: str
) -> None:
    dense_sae = make_sae(dtype, "dense", architecture)
    sparse_sae = make_sae(dtype, "sparse", architecture)
    x = torch.randn(*LEADING, D_IN, dtype=dtype)
    gate = torch.rand(*LEADING, 1, dtype=dtype) if with_gate else None
    upstream = torch.randn(*LEADING, D_IN, dtype=dtype)

    dense_x_hat = dense_sae(x, gate)
    sparse_x_hat = sparse_sae(x, gate)
    dense_grads = gradients(dense_sae, (dense_x_hat * upstream).sum())
    sparse_grads = gradients(sparse_sae, (sparse_x_hat * upstream).sum())

    tolerance = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {}
    assert_close(sparse_x_hat, dense_x_hat, **tolerance)
    assert set(sparse_grads) == {"W_enc", "b_enc", "W_dec", "b_dec"}
    for name in sparse_grads:
        assert_close(sparse_grads[name], dense_grads[name], **tolerance, msg=name)


def test_hook_acts_sees_dense_latents() -> None:
    seen: dict[str, torch.Tensor] = {}
    x = torch.randn(*LEADING, D_IN, dtype=torch.float64)
    for mode in ("dense", "sparse"):
        sae = make_sae(torch.float64, mode)
        handle = sae.hook_acts.register_forward_hook(
            lambda module, inputs, acts, mode=mode: seen.__setitem__(mode, acts.detach())
        )
        sae(x)
        handle.remove()
    assert seen["sparse"].shape == (LEADING[0] * LEADING[1], D_SAE)
    assert_close(seen["sparse"], seen["dense"])
    assert ((seen["sparse"] != 0).sum(dim=-1) <= K).all()


EDITS = {
    "ablate": lambda sae, latent: ablate_latents(sae, latent),
    "clamp": lambda sae, latent: clamp_latents(sae, latent, 3.0),
    "steer": lambda sae, latent: steer_latents(sae, latent, 2.0),
}


@pytest.mark.parametrize("edit", sorted(EDITS))
@pytest.mark.parametrize("inference", [False, True])
def test_latent_edits_act_on_sparse_path(edit: str, inference: bool) -> None:
    x = torch.randn(*LEADING, D_IN, dtype=torch.float64)
    outputs = {}
    for mode in ("dense", "sparse"):
        sae = make_sae(torch.float64, mode)
        # Ablating must change the output, so ablate a latent that fires on the first token.
        latent = int(sae.encode(x).reshape(-1, D_SAE)[0].argmax())
        with torch.inference_mode(inference), EDITS[edit](sae, latent):
            outputs[mode] = sae(x).clone()
        with torch.inference_mode(inference):
            outputs[f"{mode}_clean"] = sae(x).clone()
    assert_close(outputs["sparse"], outputs["dense"])
    assert not torch.allclose(outputs["sparse"], outputs["sparse_clean"])


def test_in_place_edit_acts_on_sparse_path() -> None:
    x = torch.randn(*LEADING, D_IN, dtype=torch.float64)
    sae = make_sae(torch.float64, "sparse")
    clean = sae(x).detach()

    def zero_in_place(module: torch.nn.Module, inputs: object, acts: torch.Tensor) -> None:
        acts.zero_()  # returns None, so only the version counter shows the edit

    handle = sae.hook_acts.register_forward_hook(zero_in_place)
    try:
        edited = sae(x).detach()
    finally:
        handle.remove()
    assert_close(edited, sae.b_dec.detach().expand_as(edited))
    assert not torch.allclose(edited, clean)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_trainer_step_same_in_both_modes(architecture: str) -> None:
    x = torch.randn(64, D_IN)
    trained = {}
    for mode in ("dense", "sparse"):
        sae = make_sae(torch.float32, mode, architecture)
        cfg = TrainingConfig(total_tokens=640, batch_size=64, decode_mode=mode)
        trainer = Trainer(sae, cfg, progress=False)
        assert sae.decode_mode == mode
        metrics = trainer.train_step(x)
        trained[mode] = (metrics, {n: p.detach().clone() for n, p in sae.named_parameters()})
    assert trained["sparse"][0]["loss/mse"] == pytest.approx(trained["dense"][0]["loss/mse"])
    assert trained["sparse"][0]["sparsity/l0"] == trained["dense"][0]["sparsity/l0"]
    for name, parameter in trained["sparse"][1].items():
        assert_close(parameter, trained["dense"][1][name], rtol=1e-5, atol=1e-6, msg=name)


def test_invalid_decode_mode_raises() -> None:
    sae = make_sae(torch.float32, "fast")
    with pytest.raises(ValueError, match="decode_mode='fast' is invalid"):
        sae(torch.randn(2, D_IN))


def test_auto_rule() -> None:
    assert prefers_sparse_decode(k=32, d_sae=4608)
    assert prefers_sparse_decode(k=144, d_sae=4608)
    assert not prefers_sparse_decode(k=145, d_sae=4608)
    assert not prefers_sparse_decode(k=K, d_sae=D_SAE)


def graph_names(output: torch.Tensor) -> set[str]:
    """Return the names of every autograd node that ``output`` depends on."""
    names, seen, stack = set(), set(), [output.grad_fn]
    while stack:
        node = stack.pop()
        if node is not None and id(node) not in seen:
            seen.add(id(node))
            names.add(type(node).__name__)
            stack.extend(next_node for next_node, _ in node.next_functions)
    return names


def test_auto_mode_follows_rule() -> None:
    cfg = SAEConfig(d_in=D_IN, d_sae=64, architecture="topk", k=2)  # k / d_sae = 1/32
    sparse_sae = SparseAutoencoder(cfg)
    dense_sae = make_sae(torch.float32, "auto")  # k / d_sae = 3/13
    assert "SparseDecodeBackward" in graph_names(sparse_sae(torch.randn(4, D_IN)))
    assert "SparseDecodeBackward" not in graph_names(dense_sae(torch.randn(4, D_IN)))


COMPOSITES = {
    "deep": DeepConfig(d_in=D_IN, d_sae=D_SAE, k=K, dtype="float64"),
    "moe": MixtureConfig(
        d_in=D_IN, d_sae=16, n_experts=2, experts_per_token=2, k=3, dtype="float64"
    ),
    "hierarchical": HierarchicalConfig(
        d_in=D_IN, d_sae=16, child_size=3, k=2, child_k=1, dtype="float64"
    ),
}


def make_composite(name: str, decode_mode: str) -> torch.nn.Module:
    torch.manual_seed(5)
    sae = build_sae(COMPOSITES[name])
    with torch.no_grad():
        sae.b_dec.normal_()
    sae.decode_mode = decode_mode
    return sae


@pytest.mark.parametrize("name", sorted(COMPOSITES))
def test_composite_matches_dense(name: str) -> None:
    dense_sae, sparse_sae = make_composite(name, "dense"), make_composite(name, "sparse")
    x = torch.randn(*LEADING, D_IN, dtype=torch.float64)
    gate = torch.rand(*LEADING, 1, dtype=torch.float64)
    upstream = torch.randn(*LEADING, D_IN, dtype=torch.float64)

    dense_x_hat = dense_sae(x, gate)
    sparse_x_hat = sparse_sae(x, gate)
    dense_grads = gradients(dense_sae, (dense_x_hat * upstream).sum())
    sparse_grads = gradients(sparse_sae, (sparse_x_hat * upstream).sum())

    assert "DecodeBackward" in "".join(graph_names(sparse_x_hat))
    assert_close(sparse_x_hat, dense_x_hat)
    for parameter_name, dense_grad in dense_grads.items():
        assert_close(sparse_grads[parameter_name], dense_grad, msg=parameter_name)


@pytest.mark.parametrize("name", sorted(COMPOSITES))
def test_composite_ablation_acts_on_sparse_path(name: str) -> None:
    x = torch.randn(*LEADING, D_IN, dtype=torch.float64)
    outputs = {}
    for mode in ("dense", "sparse"):
        sae = make_composite(name, mode)
        latent = int(sae.encode(x).reshape(-1, sae.cfg.d_sae)[0].argmax())
        with ablate_latents(sae, latent):
            outputs[mode] = sae(x).detach()
        outputs[f"{mode}_clean"] = sae(x).detach()
    assert_close(outputs["sparse"], outputs["dense"])
    assert not torch.allclose(outputs["sparse"], outputs["sparse_clean"])


@pytest.mark.parametrize("name", sorted(COMPOSITES))
def test_composite_trainer_step_same(name: str) -> None:
    x = torch.randn(64, D_IN, dtype=torch.float64)
    trained = {}
    for mode in ("dense", "sparse"):
        sae = make_composite(name, mode)
        cfg = TrainingConfig(total_tokens=640, batch_size=64, decode_mode=mode)
        metrics = Trainer(sae, cfg, progress=False).train_step(x)
        trained[mode] = (metrics, {n: p.detach().clone() for n, p in sae.named_parameters()})
    assert trained["sparse"][0]["loss/mse"] == pytest.approx(trained["dense"][0]["loss/mse"])
    for parameter_name, parameter in trained["sparse"][1].items():
        assert_close(parameter, trained["dense"][1][parameter_name], msg=parameter_name)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_sae_matches_dense(dtype: torch.dtype) -> None:
    dense_sae, sparse_sae = make_sae(dtype, "dense"), make_sae(dtype, "sparse")
    x = torch.randn(*LEADING, D_IN, dtype=dtype)
    upstream = torch.randn(*LEADING, D_IN, dtype=dtype)

    sparse_x_hat = sparse_sae(x)
    dense_grads = gradients(dense_sae, (dense_sae(x) * upstream).float().sum())
    sparse_grads = gradients(sparse_sae, (sparse_x_hat * upstream).float().sum())

    assert "SparseDecodeBackward" in graph_names(sparse_x_hat)
    for name, sparse_grad in sparse_grads.items():
        assert sparse_grad.dtype == dtype
        # Both paths round to the half-precision dtype at different points.
        assert_close(sparse_grad, dense_grads[name], rtol=2e-2, atol=2e-2, msg=name)
