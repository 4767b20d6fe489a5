"""JumpReLU: forward values, straight-through gradients and a float32 threshold."""

from __future__ import annotations

import torch
from torch.testing import assert_close

from saehooks.sae import JumpReLUSAE, SAEConfig, build_sae
from saehooks.sae.jumprelu import jumprelu, rectangle, step
from saehooks.trackers import StepL0Penalty, attached


def make_jumprelu(
    d_in: int = 4, d_sae: int = 2, threshold: float = 1.0, bandwidth: float = 0.1, dtype="float32"
) -> JumpReLUSAE:
    cfg = SAEConfig(
        d_in=d_in,
        d_sae=d_sae,
        architecture="jumprelu",
        k=None,
        dtype=dtype,
        jumprelu_threshold=threshold,
        jumprelu_bandwidth=bandwidth,
    )
    sae = build_sae(cfg)
    assert isinstance(sae, JumpReLUSAE)
    return sae


def set_pre_acts(sae: JumpReLUSAE, pre_acts: list[float]) -> None:
    """Make every input map to ``pre_acts``: W_enc = 0 and b_enc = pre_acts."""
    with torch.no_grad():
        sae.W_enc.zero_()
        sae.b_enc.copy_(torch.tensor(pre_acts))


def test_rectangle_kernel_is_open_unit_interval() -> None:
    u = torch.tensor([-0.6, -0.5, -0.3, 0.0, 0.49, 0.5, 2.0])
    assert torch.equal(rectangle(u), torch.tensor([0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0]))


def test_forward_zeroes_below_threshold() -> None:
    pre_acts = torch.tensor([[0.5, 0.97, 1.0, 1.3, -2.0]])
    threshold = torch.ones(5)
    expected = torch.tensor([[0.0, 0.0, 0.0, 1.3, 0.0]])
    assert torch.equal(jumprelu(pre_acts, threshold, 0.1), expected)
    assert torch.equal(step(pre_acts, threshold, 0.1), torch.tensor([[0.0, 0.0, 0.0, 1.0, 0.0]]))


def test_l0_threshold_gradient_hand_values() -> None:
    # Threshold 1, bandwidth 0.1: (0.97 - 1) / 0.1 = -0.3 lies in the kernel, so the
    # gradient is -1 / 0.1 = -10; (0.5 - 1) / 0.1 = -5 lies outside, so it is 0.
    sae = make_jumprelu(threshold=1.0, bandwidth=0.1)
    set_pre_acts(sae, [0.97, 0.5])
    penalty = StepL0Penalty()
    with attached(sae, l0_penalty=penalty):
        sae(torch.randn(1, 4))
    assert penalty.loss is not None
    assert penalty.loss.item() == 0.0  # neither latent fires
    penalty.loss.backward()
    assert_close(sae.threshold.grad, torch.tensor([-10.0, 0.0]))
    assert sae.b_enc.grad is None  # the step passes nothing to the pre-activations


def test_l0_gradient_averages_over_tokens() -> None:
    pre_acts = torch.tensor([[0.97, 1.02], [0.5, 1.04]], requires_grad=True)
    threshold = torch.ones(2, requires_grad=True)
    step(pre_acts, threshold, 0.1).sum(dim=-1).mean().backward()
    # Latent 0: one of two tokens in the kernel, -10 / 2. Latent 1: both, -10.
    assert_close(threshold.grad, torch.tensor([-5.0, -10.0]))


def test_jumprelu_gradients_hand_values() -> None:
    pre_acts = torch.tensor([[0.97, 1.02, 2.0, 0.5]], requires_grad=True)
    threshold = torch.ones(4, requires_grad=True)
    grad_acts = torch.tensor([[2.0, 3.0, 5.0, 7.0]])
    jumprelu(pre_acts, threshold, 0.1).backward(grad_acts)
    # d/d threshold = -(threshold / bandwidth) K((z - threshold) / bandwidth) * grad:
    # z=0.97 and z=1.02 are in the kernel (-10 * 2, -10 * 3); 2.0 and 0.5 are not.
    assert_close(threshold.grad, torch.tensor([-20.0, -30.0, 0.0, 0.0]))
    # d/dz is the ordinary derivative of z * H(z - threshold): the gradient where active.
    assert_close(pre_acts.grad, torch.tensor([[0.0, 3.0, 5.0, 0.0]]))


def test_bfloat16_sae_keeps_float32_threshold() -> None:
    sae = make_jumprelu(d_in=4, d_sae=3, threshold=1.1, dtype="bfloat16")
    assert sae.W_enc.dtype == torch.bfloat16
    assert sae.threshold.dtype == torch.float32
    assert torch.equal(sae.threshold, torch.full((3,), 1.1, dtype=torch.float32))
    with torch.no_grad():
        out = sae(torch.randn(2, 5, 4, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16


def test_adam_moves_float32_threshold_where_bfloat16_would_stay() -> None:
    sae = make_jumprelu(d_in=4, d_sae=3, threshold=1.1, dtype="bfloat16")
    control = torch.nn.Parameter(torch.full((3,), 1.1, dtype=torch.bfloat16))
    optimizer = torch.optim.Adam([sae.threshold, control], lr=1e-4)
    for _ in range(200):
        optimizer.zero_grad()
        sae.threshold.grad = torch.full((3,), -1.0)
        control.grad = torch.full((3,), -1.0, dtype=torch.bfloat16)
        optimizer.step()
    # Each Adam step moves by about lr = 1e-4, 0.02 in total; bfloat16's spacing near 1.1 is
    # 2**-7 = 0.0078, so each step rounds back there.
    assert_close(sae.threshold.detach(), torch.full((3,), 1.12), atol=1e-3, rtol=0)
    assert torch.equal(control.detach(), torch.full((3,), 1.1, dtype=torch.bfloat16))


def test_forward_3d_equals_flattened() -> None:
    sae = make_jumprelu(d_in=4, d_sae=6, threshold=0.2)
    with torch.no_grad():
        sae.b_enc.normal_()
        x = torch.randn(2, 3, 4)
        assert torch.equal(sae(x).reshape(6, 4), sae(x.reshape(6, 4)))


def test_gate_multiplies_after_threshold() -> None:
    sae = make_jumprelu(d_in=4, d_sae=2, threshold=1.0)
    set_pre_acts(sae, [2.0, 0.5])
    x = torch.randn(3, 4)
    gate = torch.tensor([[0.25], [1.0], [0.0]])  # broadcasts over latents
    with torch.no_grad():
        acts = sae.encode(x, gate)
    assert_close(acts, torch.tensor([[0.5, 0.0], [2.0, 0.0], [0.0, 0.0]]))
