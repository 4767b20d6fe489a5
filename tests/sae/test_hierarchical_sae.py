"""Parent latents gate their child SAEs; hand-set weights pin the output and the child count."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from saehooks.sae.hierarchical import HierarchicalConfig, HierarchicalSAE, child_usage


def hand_set_hierarchy() -> HierarchicalSAE:
    """Two parent latents (the input axes), each with a one-latent child; k=1 everywhere."""
    sae = HierarchicalSAE(HierarchicalConfig(d_in=2, d_sae=4, child_size=1, k=1, child_k=1))
    with torch.no_grad():
        sae.b_dec.zero_()
        sae.parent.W_enc.copy_(torch.eye(2))
        sae.parent.b_enc.zero_()
        sae.parent.W_dec.copy_(torch.eye(2))
        children = (([[1.0], [1.0]], [[0.5, 0.5]]), ([[2.0], [0.0]], [[-1.0, 1.0]]))
        for child, (w_enc, w_dec) in zip(sae.child_saes, children, strict=True):
            child.W_enc.copy_(torch.tensor(w_enc))
            child.b_enc.zero_()
            child.W_dec.copy_(torch.tensor(w_dec))
    return sae


def test_hand_set_gating() -> None:
    sae = hand_set_hierarchy()
    x = torch.tensor([[3.0, 1.0], [1.0, 2.0]])
    with torch.no_grad():
        acts = sae.encode(x)
        x_hat = sae(x)
    # Token 0: parent 0 fires (3); child 0 gives 3 + 1 = 4, child 1 would give 6 but is gated.
    # Token 1: parent 1 fires (2); child 1 gives 2, child 0 would give 3 but is gated.
    assert_close(acts, torch.tensor([[3.0, 0.0, 4.0, 0.0], [0.0, 2.0, 0.0, 2.0]]))
    assert_close(x_hat, torch.tensor([[3.0 + 2.0, 2.0], [-2.0, 2.0 + 2.0]]))


def test_child_sees_only_tokens_where_parent_fires() -> None:
    sae = hand_set_hierarchy()
    seen: list[torch.Tensor] = []
    handle = sae.child_saes[0].hook_input.register_forward_hook(
        lambda module, inputs, output: seen.append(output.detach())
    )
    try:
        with torch.no_grad():
            sae(torch.tensor([[3.0, 1.0], [1.0, 2.0], [4.0, 0.0]]))
    finally:
        handle.remove()
    assert len(seen) == 1
    assert_close(seen[0], torch.tensor([[3.0, 1.0], [4.0, 0.0]]))


def test_gated_children_get_no_gradient() -> None:
    sae = hand_set_hierarchy()
    x = torch.tensor([[3.0, 1.0]])  # only parent 0 fires
    (sae(x) - x).pow(2).sum().backward()
    assert sae.child_saes[0].W_enc.grad is not None
    assert sae.child_saes[1].W_enc.grad is None
    assert sae.parent.W_enc.grad is not None


def test_three_d_input_equals_flattened() -> None:
    sae = HierarchicalSAE(HierarchicalConfig(d_in=8, d_sae=6 * 5, child_size=4, k=2, child_k=2))
    x = torch.randn(2, 3, 8)
    with torch.no_grad():
        assert_close(sae(x), sae(x.reshape(6, 8)).reshape(2, 3, 8))
        acts = sae.encode(x)
    assert acts.shape == (2, 3, 30)
    # Every token: 2 parent latents and at most 2 latents in each of their 2 children.
    parent_l0 = (acts[..., :6] != 0).sum(dim=-1)
    child_l0 = (acts[..., 6:] != 0).sum(dim=-1)
    assert (parent_l0 <= 2).all()
    assert (child_l0 <= 4).all()


def test_fold_input_scale_is_exact() -> None:
    cfg = HierarchicalConfig(d_in=8, d_sae=6 * 5, child_size=4, k=2, child_k=2, dtype="float64")
    sae = HierarchicalSAE(cfg)
    with torch.no_grad():
        sae.b_dec.copy_(torch.randn(8, dtype=torch.float64))
        x = torch.randn(16, 8, dtype=torch.float64)
        expected = sae(x * 0.25) / 0.25
        sae.fold_input_scale(0.25)
        assert_close(sae(x), expected)


def test_child_usage_counts_fired_and_moved() -> None:
    cfg = HierarchicalConfig(d_in=4, d_sae=3 * 3, child_size=2, k=1, child_k=1)
    initial = HierarchicalSAE(cfg)
    trained = HierarchicalSAE(cfg)
    trained.load_state_dict(initial.state_dict())
    with torch.no_grad():
        trained.child_saes[0].W_dec[1] = -initial.child_saes[0].W_dec[1]  # turned around
        trained.child_saes[1].W_dec *= 0.5  # shorter, same direction: not moved
        trained.child_saes[2].W_dec[0] = initial.child_saes[2].W_dec[1]  # a new direction
    fired = torch.zeros(9, dtype=torch.bool)
    fired[3 + 0] = True  # child 0, latent 0
    fired[3 + 2 + 1] = True  # child 1, latent 1
    fired[0] = True  # a parent latent does not count

    usage = child_usage(trained, initial, fired)
    assert usage.fired == 2
    assert usage.moved == 2
    assert usage.learned == 1
    assert usage.total == 3


def test_child_usage_rejects_mismatched_inputs() -> None:
    cfg = HierarchicalConfig(d_in=4, d_sae=3 * 3, child_size=2, k=1, child_k=1)
    sae = HierarchicalSAE(cfg)
    with pytest.raises(ValueError, match=r"latent_fired has shape \(4,\), expected \(9,\)"):
        child_usage(sae, sae, torch.zeros(4, dtype=torch.bool))
    other = HierarchicalSAE(HierarchicalConfig(d_in=4, d_sae=2 * 4, child_size=3, k=1, child_k=1))
    with pytest.raises(ValueError, match="different configs"):
        child_usage(sae, other, torch.zeros(9, dtype=torch.bool))


@pytest.mark.parametrize(
    "values,message",
    [
        ({"d_sae": 31}, "d_sae=31 must equal d_parent \\* \\(1 \\+ child_size\\)"),
        ({"k": 7}, "k=7 is invalid; use 1 <= k <= d_parent=6"),
        ({"child_k": 5}, "child_k=5 is invalid; use 1 <= child_k <= child_size=4"),
    ],
)
def test_config_errors_name_the_field(values: dict, message: str) -> None:
    settings = {"d_in": 8, "d_sae": 30, "child_size": 4, "k": 2, "child_k": 2, **values}
    with pytest.raises(ValueError, match=message):
        HierarchicalConfig(**settings)
