"""RMSNorm as mamba-ssm defines it (weight, no bias) and the fused add+norm used by the Mamba blocks.

Dtypes follow mamba-ssm's fused kernel: the sum x + residual and the normalization are computed in fp32,
the output has x's dtype, and the returned residual has the incoming residual's dtype (fp32 when there is
none and residual_in_fp32, else x itself). Under bf16 this normalizes the exact sum, not its rounding.
"""
from __future__ import annotations

import torch
import torch.nn as nn


def rms_norm_fn(x, weight, residual=None, prenorm=False, residual_in_fp32=False, eps=1e-5):
    """y = (x + residual) / rms(x + residual) * weight; with prenorm, returns (y, x + residual)."""
    if weight.shape != x.shape[-1:]:
        raise ValueError(f"rms_norm_fn: weight must be ({x.shape[-1]},) for x of shape {tuple(x.shape)}, "
                         f"got {tuple(weight.shape)}")
    if residual is not None and residual.shape != x.shape:
        raise ValueError(f"rms_norm_fn: residual must have x's shape {tuple(x.shape)}, got {tuple(residual.shape)}")
    summed = x.float() if residual is None else x.float() + residual.float()
    if residual is not None:
        new_residual = summed.to(residual.dtype)
    else:
        new_residual = summed if residual_in_fp32 else x
    y = summed * torch.rsqrt(summed.square().mean(-1, keepdim=True) + eps) * weight.float()
    y = y.to(x.dtype)
    return (y, new_residual) if prenorm else y


class RMSNorm(nn.Module):
    """Root-mean-square norm with a learned per-channel weight (no bias), parameter name `weight`."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x, residual=None, prenorm=False, residual_in_fp32=False):
        return rms_norm_fn(x, self.weight, residual, prenorm, residual_in_fp32, self.eps)
