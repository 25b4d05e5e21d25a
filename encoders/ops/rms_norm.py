"""RMSNorm as mamba-ssm defines it (weight, no bias) and the fused add+norm used by the Mamba blocks."""
from __future__ import annotations

import torch
import torch.nn as nn


def rms_norm_fn(x, weight, residual=None, prenorm=False, residual_in_fp32=False, eps=1e-5):
    """y = norm(x + residual); with prenorm also returns the summed residual (fp32 if asked)."""
    if residual is not None:
        x = x.float() + residual.float() if residual_in_fp32 else x + residual
    new_residual = x.float() if residual_in_fp32 else x
    xf = x.float()
    y = (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * weight.float()).to(weight.dtype if x.dtype == torch.float32 else x.dtype)
    return (y, new_residual) if prenorm else y


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x, residual=None, prenorm=False, residual_in_fp32=False):
        return rms_norm_fn(x, self.weight, residual, prenorm, residual_in_fp32, self.eps)
