"""Portable pure-PyTorch selective scan: runs on any device, differentiable, no compiled code.

Tensors are time-major (l, b, d, n) so each step touches one contiguous slice. The recurrence
h_t = a_t * h_{t-1} + x_t is split into chunks of about sqrt(L) steps: all chunks advance
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
    """h with h_t = a_t h_{t-1} + x_t (h_{-1} = 0) along dim 0 of time-major (L, ...) tensors.

    The first num_chunks * chunk steps go through the chunked scan; the few steps left over (fewer than
    one chunk) continue sequentially from its last state, which avoids padded copies of a and x.
    """
    length = a.shape[0]
    chunk = max(1, math.isqrt(length))
    num_chunks = length // chunk
    main = num_chunks * chunk
    h = torch.empty_like(x)
    a_main = a[:main].unflatten(0, (num_chunks, chunk))
    x_main = x[:main].unflatten(0, (num_chunks, chunk))
    h_main = h[:main].unflatten(0, (num_chunks, chunk))
    decay = torch.empty_like(a_main)  # product of a from the chunk start to step t
    h_main[:, 0] = x_main[:, 0]
    decay[:, 0] = a_main[:, 0]
    for t in range(1, chunk):
        torch.addcmul(x_main[:, t], a_main[:, t], h_main[:, t - 1], out=h_main[:, t])
        torch.mul(a_main[:, t], decay[:, t - 1], out=decay[:, t])
    carries = torch.zeros_like(h_main[:, 0])  # the state entering each chunk
    for c in range(1, num_chunks):
        torch.addcmul(h_main[c - 1, -1], decay[c - 1, -1], carries[c - 1], out=carries[c])
    h_main.addcmul_(decay, carries.unsqueeze(1))
    for t in range(main, length):
        torch.addcmul(x[t], a[t], h[t - 1], out=h[t])
    return h


class LinearScan(torch.autograd.Function):
    """h_t = a_t h_{t-1} + x_t over dim 0, with the adjoint scan as backward: dh_t = g_t + a_{t+1} dh_{t+1}."""

    @staticmethod
    def forward(ctx, a, x):
        h = _chunked_linear_scan(a, x)
        ctx.save_for_backward(a, h)
        return h

    @staticmethod
    def backward(ctx, grad_h):
        a, h = ctx.saved_tensors
        a_next = torch.cat([a[1:], a.new_zeros(1, *a.shape[1:])])
        dh = _chunked_linear_scan(a_next.flip(0), grad_h.flip(0)).flip(0)
        h_prev = torch.cat([h.new_zeros(1, *h.shape[1:]), h[:-1]])
        return dh * h_prev, dh


def _time_major(t, dim):
    """(b, n, l) or (b, g, n, l) -> (l, b, 1 or d, n), repeating groups over their channels."""
    t = t.unsqueeze(1) if t.dim() == 3 else t.repeat_interleave(dim // t.shape[1], dim=1)
    return t.permute(3, 0, 1, 2)


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
    B = _time_major(B.to(compute), dim)
    C = _time_major(C.to(compute), dim)
    delta_t = delta.permute(2, 0, 1)[..., None]                              # (l, b, d, 1)
    decay = torch.exp(delta_t * A)                                           # (l, b, d, n)
    h = LinearScan.apply(decay, (delta_t * u.permute(2, 0, 1)[..., None]) * B)
    y = (h * C).sum(-1).permute(1, 2, 0)                                     # (b, d, l)
    out = y if D is None else y + u * D.to(compute)[:, None]
    if z is not None:
        out = out * F.silu(z.to(compute))
    out = out.to(dtype_in)
    return (out, h[-1].detach()) if return_last_state else out
