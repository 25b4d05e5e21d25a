"""The sequential selective scan, step by step over L: the ground truth every fast path is tested against.

Semantics are mamba-ssm's `selective_scan_ref`:
    h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t,   y_t = <C_t, h_t> + D * u_t,   out = y * silu(z)
Like mamba-ssm's it materializes exp(delta A) and delta B u as (b, d, l, n) tensors, so only the recurrence
itself is a Python loop. Computes in fp32, or in fp64 for fp64 inputs; returns u's dtype.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def selective_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                       return_last_state=False):
    """u, delta, z: (b, d, l); A: (d, n); B, C: (b, n, l) or (b, g, n, l); D, delta_bias: (d,)."""
    dtype_in = u.dtype
    compute = torch.float64 if dtype_in == torch.float64 else torch.float32
    u, delta, A = u.to(compute), delta.to(compute), A.to(compute)
    B, C = B.to(compute), C.to(compute)
    if delta_bias is not None:
        delta = delta + delta_bias[..., None].to(compute)
    if delta_softplus:
        delta = F.softplus(delta)
    dim = u.shape[1]
    if B.dim() == 3:
        B, C = B.unsqueeze(1), C.unsqueeze(1)
    else:  # grouped: each group of d/g channels shares B and C
        B = B.repeat_interleave(dim // B.shape[1], dim=1)
        C = C.repeat_interleave(dim // C.shape[1], dim=1)
    decay = torch.exp(delta[..., None] * A[:, None, :])                  # (b, d, l, n)
    inject = (delta * u)[..., None] * B.transpose(-1, -2)                # (b, d, l, n)
    x = u.new_zeros(u.shape[0], dim, A.shape[1])
    states = []
    for t in range(u.shape[2]):
        x = decay[:, :, t] * x + inject[:, :, t]
        states.append(x)
    y = (torch.stack(states, dim=2) * C.transpose(-1, -2)).sum(-1)
    out = y if D is None else y + u * D.to(compute)[:, None]
    if z is not None:
        out = out * F.silu(z.to(compute))
    out = out.to(dtype_in)
    return (out, x) if return_last_state else out
