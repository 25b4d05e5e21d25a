"""Portable pure-PyTorch selective scan: runs on any device, differentiable, no compiled code.

The recurrence h_t = a_t * h_{t-1} + x_t is split into chunks of about sqrt(L) steps: all chunks advance
together through their steps, then a short loop carries the state across chunk boundaries, so Python iterates
~2·sqrt(L) times instead of L. Only products of decays (values in [0, 1] for A <= 0) are formed, never
their inverses, so nothing overflows. The scan has its own backward (the same scan run in reverse time), so
autograd does not keep one graph node per step. It materializes (b, d, l, n) tensors: use `cpp` or `cuda`
where memory matters.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _chunked_linear_scan(a, x):
    """h with h_t = a_t h_{t-1} + x_t (h_{-1} = 0) along dim -2 of (..., L, n) tensors."""
    length = a.shape[-2]
    chunk = max(1, math.isqrt(length - 1) + 1)
    num_chunks = -(-length // chunk)
    pad = num_chunks * chunk - length
    if pad:
        a = F.pad(a, (0, 0, 0, pad), value=1.0)
        x = F.pad(x, (0, 0, 0, pad))
    a = a.unflatten(-2, (num_chunks, chunk))
    x = x.unflatten(-2, (num_chunks, chunk))
    h = torch.empty_like(x)
    decay = torch.empty_like(a)  # product of a from the chunk start to step t
    h[..., 0, :] = x[..., 0, :]
    decay[..., 0, :] = a[..., 0, :]
    for t in range(1, chunk):
        torch.addcmul(x[..., t, :], a[..., t, :], h[..., t - 1, :], out=h[..., t, :])
        torch.mul(a[..., t, :], decay[..., t - 1, :], out=decay[..., t, :])
    carry = torch.zeros_like(h[..., 0, 0, :])
    carries = []
    for c in range(num_chunks):
        carries.append(carry)
        carry = torch.addcmul(h[..., c, -1, :], decay[..., c, -1, :], carry)
    h = torch.addcmul(h, decay, torch.stack(carries, dim=-2).unsqueeze(-2))
    return h.flatten(-3, -2)[..., :length, :]


class LinearScan(torch.autograd.Function):
    """h_t = a_t h_{t-1} + x_t with the adjoint scan as backward: dh_t = g_t + a_{t+1} dh_{t+1}."""

    @staticmethod
    def forward(ctx, a, x):
        h = _chunked_linear_scan(a, x)
        ctx.save_for_backward(a, h)
        return h

    @staticmethod
    def backward(ctx, grad_h):
        a, h = ctx.saved_tensors
        a_next = F.pad(a[..., 1:, :], (0, 0, 0, 1))
        dh = _chunked_linear_scan(a_next.flip(-2), grad_h.flip(-2)).flip(-2)
        h_prev = F.pad(h[..., :-1, :], (0, 0, 1, 0))
        return dh * h_prev, dh


def _per_channel(t, dim):
    """(b, n, l) or (b, g, n, l) -> (b, 1 or d, l, n), repeating groups over their channels."""
    t = t.unsqueeze(1) if t.dim() == 3 else t.repeat_interleave(dim // t.shape[1], dim=1)
    return t.transpose(-1, -2)


def selective_scan_torch(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                         return_last_state=False):
    """mamba-ssm's selective_scan_fn semantics; computes in fp32 (fp64 for fp64 input)."""
    dtype_in = u.dtype
    compute = torch.float64 if dtype_in == torch.float64 else torch.float32
    u, delta, A = u.to(compute), delta.to(compute), A.to(compute)
    if delta_bias is not None:
        delta = delta + delta_bias.to(compute)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    dim = u.shape[1]
    B = _per_channel(B.to(compute), dim)
    C = _per_channel(C.to(compute), dim)
    decay = torch.exp(delta[..., None] * A[:, None, :])
    h = LinearScan.apply(decay, (delta * u)[..., None] * B)
    y = torch.einsum("bdln,bln->bdl", h, C[:, 0]) if C.shape[1] == 1 else torch.einsum("bdln,bdln->bdl", h, C)
    out = y if D is None else y + u * D.to(compute)[:, None]
    if z is not None:
        out = out * F.silu(z.to(compute))
    out = out.to(dtype_in)
    return (out, h[:, :, -1].detach()) if return_last_state else out
