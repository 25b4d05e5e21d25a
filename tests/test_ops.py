"""causal_conv1d and RMSNorm against their plain definitions, including bf16 behaviour."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from encoders.ops.causal_conv1d import causal_conv1d_fn, causal_conv1d_ref
from encoders.ops.rms_norm import RMSNorm, rms_norm_fn


def conv_by_hand(x, weight, bias):
    """Independent of both implementations: a double loop over channels and output steps."""
    batch, dim, length = x.shape
    width = weight.shape[1]
    out = torch.zeros(batch, dim, length, dtype=torch.float64)
    for c in range(dim):
        for t in range(length):
            for j in range(width):
                src = t - (width - 1) + j
                if src >= 0:
                    out[:, c, t] += weight[c, j].double() * x[:, c, src].double()
            out[:, c, t] += bias[c].double()
    return out


@pytest.mark.parametrize("activation", [None, "silu", "swish"])
def test_causal_conv1d_matches_definition(activation):
    g = torch.Generator().manual_seed(0)
    x, weight, bias = torch.randn(3, 5, 9, generator=g), torch.randn(5, 4, generator=g), torch.randn(5, generator=g)
    expected = conv_by_hand(x, weight, bias)
    if activation:
        expected = F.silu(expected)
    for fn in (causal_conv1d_fn, causal_conv1d_ref):
        out = fn(x, weight, bias, activation)
        assert out.shape == x.shape and out.dtype == x.dtype
        torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)


def test_causal_conv1d_is_causal_and_differentiable():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 12, generator=g, requires_grad=True)
    weight = torch.randn(3, 4, generator=g, requires_grad=True)
    out = causal_conv1d_fn(x, weight, None, "silu")
    out[..., 5].sum().backward()
    assert x.grad[..., 6:].abs().max() == 0  # no step depends on the future
    assert x.grad[..., 2:6].abs().min() > 0
    assert weight.grad is not None and weight.grad.abs().sum() > 0


def test_causal_conv1d_bf16_close_to_fp32():
    g = torch.Generator().manual_seed(2)
    x, weight, bias = torch.randn(2, 8, 16, generator=g), torch.randn(8, 4, generator=g), torch.randn(8, generator=g)
    ref = causal_conv1d_ref(x, weight, bias, "silu")
    out = causal_conv1d_fn(x.bfloat16(), weight.bfloat16(), bias.bfloat16(), "silu")
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, rtol=3e-2, atol=3e-2)


@pytest.mark.parametrize("kwargs, message", [
    (dict(activation="relu"), "activation"),
    (dict(weight=torch.zeros(4, 4)), "weight must be"),
    (dict(bias=torch.zeros(3)), "bias must be"),
    (dict(x=torch.zeros(5, 9)), "x must be"),
])
def test_causal_conv1d_bad_input(kwargs, message):
    args = dict(x=torch.zeros(2, 5, 9), weight=torch.zeros(5, 4), bias=None, activation=None)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        causal_conv1d_fn(**args)


def rms_by_hand(x, weight, eps):
    x = x.double()
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * weight.double()


def test_rms_norm_matches_formula():
    g = torch.Generator().manual_seed(3)
    x, weight = torch.randn(2, 7, 32, generator=g), torch.randn(32, generator=g)
    norm = RMSNorm(32, eps=1e-6)
    with torch.no_grad():
        norm.weight.copy_(weight)
    torch.testing.assert_close(norm(x).double(), rms_by_hand(x, weight, 1e-6), rtol=1e-5, atol=1e-6)
    assert norm.eps == 1e-6 and [n for n, _ in norm.named_parameters()] == ["weight"]


def test_rms_norm_prenorm_residual_fp32():
    g = torch.Generator().manual_seed(4)
    x, res, weight = torch.randn(2, 5, 16, generator=g), torch.randn(2, 5, 16, generator=g), torch.randn(16, generator=g)
    y, new_res = rms_norm_fn(x.bfloat16(), weight, residual=res, prenorm=True, residual_in_fp32=True)
    assert y.dtype == torch.bfloat16 and new_res.dtype == torch.float32
    summed = x.bfloat16().float() + res
    torch.testing.assert_close(new_res, summed)
    torch.testing.assert_close(y.float(), rms_by_hand(summed, weight, 1e-5).float(), rtol=1e-2, atol=1e-2)


def test_rms_norm_first_block_without_residual():
    x = torch.randn(2, 3, 8).bfloat16()
    y, new_res = rms_norm_fn(x, torch.ones(8), prenorm=True, residual_in_fp32=True)
    assert new_res.dtype == torch.float32 and torch.equal(new_res, x.float())
    y2, same = rms_norm_fn(x, torch.ones(8), prenorm=True, residual_in_fp32=False)
    assert same is x and torch.equal(y, y2)


def test_rms_norm_bf16_normalizes_the_exact_sum():
    """bf16 x + bf16 residual: the sum is taken in fp32 before normalizing (as mamba-ssm's kernel does),
    so the result equals the fp32 computation rounded once, not the norm of a rounded sum."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(4, 64, generator=g).bfloat16()
    res = (torch.randn(4, 64, generator=g) * 100).bfloat16()
    weight = torch.ones(64)
    y, new_res = rms_norm_fn(x, weight, residual=res, prenorm=True)
    expected = rms_by_hand(x.float() + res.float(), weight, 1e-5)
    assert y.dtype == torch.bfloat16 and new_res.dtype == torch.bfloat16
    assert torch.equal(y, expected.bfloat16())


def test_rms_norm_bad_weight():
    with pytest.raises(ValueError, match="weight must be"):
        rms_norm_fn(torch.zeros(2, 8), torch.ones(4))
