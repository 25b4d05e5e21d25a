"""Depthwise causal conv1d with causal-conv1d's interface: its CUDA kernel on CUDA when installed, else F.conv1d.

out[:, c, t] = bias[c] + sum_j weight[c, j] * x[:, c, t - (k - 1) + j]   (x is zero before t = 0), then SiLU
if activation is "silu" / "swish". Shapes: x (b, d, l), weight (d, k), bias (d,).
"""
from __future__ import annotations

import functools

import torch.nn.functional as F

ACTIVATIONS = (None, "silu", "swish")


@functools.lru_cache(maxsize=None)
def _cuda_kernel():
    """causal-conv1d's fused kernel, or None when the package (with its CUDA extension) is not importable."""
    try:
        from causal_conv1d import causal_conv1d_fn
    except Exception:
        return None
    return causal_conv1d_fn


def _check(x, weight, bias, activation):
    if activation not in ACTIVATIONS:
        raise ValueError(f"causal_conv1d: activation must be one of {ACTIVATIONS}, got {activation!r}")
    if x.dim() != 3:
        raise ValueError(f"causal_conv1d: x must be (batch, dim, length), got shape {tuple(x.shape)}")
    if weight.dim() != 2 or weight.shape[0] != x.shape[1]:
        raise ValueError(f"causal_conv1d: weight must be (dim={x.shape[1]}, width), got shape {tuple(weight.shape)}")
    if bias is not None and bias.shape != (x.shape[1],):
        raise ValueError(f"causal_conv1d: bias must be (dim={x.shape[1]},), got shape {tuple(bias.shape)}")


def causal_conv1d_ref(x, weight, bias=None, activation=None):
    """The definition, tap by tap in fp32 (returned in x's dtype): the ground truth for tests."""
    _check(x, weight, bias, activation)
    width, length = weight.shape[1], x.shape[-1]
    xf = F.pad(x.float(), (width - 1, 0))
    out = sum(weight[:, j, None].float() * xf[..., j:j + length] for j in range(width))
    if bias is not None:
        out = out + bias.float()[:, None]
    if activation is not None:
        out = F.silu(out)
    return out.to(x.dtype)


def causal_conv1d_fn(x, weight, bias=None, activation=None):
    """Causal depthwise conv (+ optional SiLU): the CUDA kernel for CUDA tensors when installed, else F.conv1d."""
    _check(x, weight, bias, activation)
    if x.is_cuda and _cuda_kernel() is not None:
        return _cuda_kernel()(x, weight, bias, activation=activation)
    out = F.conv1d(F.pad(x, (weight.shape[1] - 1, 0)), weight.unsqueeze(1), bias, groups=x.shape[1])
    return F.silu(out) if activation is not None else out
