"""The sequential selective scan, step by step over L: the ground truth every fast path is tested against.

Semantics are mamba-ssm's `selective_scan_ref`:
    h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t,   y_t = <C_t, h_t> + D * u_t,   out = y * silu(z)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def selective_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                       return_last_state=False):
    """u, delta, z: (b, d, l); A: (d, n); B, C: (b, n, l) or (b, g, n, l); D, delta_bias: (d,)."""
    dtype_in = u.dtype
    compute = torch.float64 if u.dtype == torch.float64 else torch.float32
    u, delta, A = u.to(compute), delta.to(compute), A.to(compute)
    B, C = B.to(compute), C.to(compute)
    if delta_bias is not None:
        delta = delta + delta_bias[..., None].to(compute)
    if delta_softplus:
        delta = F.softplus(delta)
    batch, dim, length = u.shape
    if B.dim() == 4:  # grouped: each group of d/g channels shares B and C
        B = B.repeat_interleave(dim // B.shape[1], dim=1)
        C = C.repeat_interleave(dim // C.shape[1], dim=1)
    x = u.new_zeros(batch, dim, A.shape[1])
    ys = []
    for t in range(length):
        dA = torch.exp(delta[:, :, t, None] * A)
        Bt = B[:, :, t] if B.dim() == 3 else B[:, :, :, t]
        Ct = C[:, :, t] if C.dim() == 3 else C[:, :, :, t]
        dBu = delta[:, :, t, None] * u[:, :, t, None] * (Bt[:, None, :] if Bt.dim() == 2 else Bt)
        x = dA * x + dBu
        ys.append(torch.einsum("bdn,bdn->bd", x, Ct[:, None, :].expand_as(x) if Ct.dim() == 2 else Ct))
    y = torch.stack(ys, dim=2)
    out = y if D is None else y + u * D.to(compute)[:, None]
    if z is not None:
        out = out * F.silu(z.to(compute))
    out = out.to(dtype_in)
    return (out, x) if return_last_state else out
