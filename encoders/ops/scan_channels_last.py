"""One direction of the Mamba mixer at inference on CPU, over (batch, length, channels) rows.

The compiled kernels (csrc/scan_channels_last.cpp) read the projections' outputs where they lie and walk the
backward direction from the end, so the mixer needs no transposed or flipped copies. Each has its plain reference
here: the same computation through the (batch, channels, length) path and mamba-ssm's sequential scan, with the
flips the official mixer does; tests hold them equal.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from encoders.ops.selective_scan import note_backend, resolve_backend
from encoders.ops.selective_scan_cpu import load_extension
from encoders.ops.selective_scan_ref import selective_scan_ref


def conv_silu_channels_last(x, weight, bias=None, reverse: bool = False, out=None):
    """SiLU(causal depthwise conv) of x (b, l, d) rows with weight (d, K): `reverse` is the conv of the flipped
    sequence, flipped back (what the backward direction sees). Returns (b, l, d) contiguous, written into `out`
    (not x itself) when given."""
    return load_extension().conv_silu_channels_last(x, weight.t().contiguous(), bias, reverse, out)


def conv_silu_channels_last_ref(x, weight, bias=None, reverse: bool = False, out=None):
    seq = x.transpose(1, 2)
    if reverse:
        seq = seq.flip(-1)
    taps = weight.shape[-1]
    y = F.silu(F.conv1d(seq, weight[:, None], bias, padding=taps - 1, groups=weight.shape[0])[..., :seq.shape[-1]])
    if reverse:
        y = y.flip(-1)
    y = y.transpose(1, 2)
    return y.contiguous() if out is None else out.copy_(y)


def scan_channels_last(u, dt_weight, A, x_dbl, z=None, D=None, delta_bias=None, delta_softplus: bool = True,
                       reverse: bool = False, out=None):
    """The gated selective scan over rows, with dt_proj inside: u, z (b, l, d); dt_weight (d, rank); A (d, n);
    x_dbl (b, l, rank + 2n) = x_proj's output [low-rank dt | B_t | C_t]; delta_t = dt_weight @ x_dbl[b, t, :rank].
    `reverse` scans from the last token to the first. With `out` (b, l, d) contiguous, the result is added to it in
    place (the other direction's output) and `out` is returned."""
    note_backend("cpp")
    return load_extension().scan_channels_last(u, dt_weight.float(), A.float().contiguous(), x_dbl, z, D, delta_bias,
                                               delta_softplus, reverse, out)


def scan_channels_last_ref(u, dt_weight, A, x_dbl, z=None, D=None, delta_bias=None, delta_softplus: bool = True,
                           reverse: bool = False, out=None):
    rank, n = dt_weight.shape[1], A.shape[1]
    delta = x_dbl[..., :rank] @ dt_weight.T

    def channels_first(t):
        t = t.transpose(1, 2)
        return t.flip(-1) if reverse else t

    B, C = x_dbl[..., rank:rank + n], x_dbl[..., rank + n:rank + 2 * n]
    y = selective_scan_ref(channels_first(u), channels_first(delta), A, channels_first(B), channels_first(C), D,
                           None if z is None else channels_first(z), delta_bias, delta_softplus)
    y = (y.flip(-1) if reverse else y).transpose(1, 2).contiguous()
    return y if out is None else out.add_(y)


def channels_last_usable(x: torch.Tensor) -> bool:
    """Whether the kernels take this input: float32 on CPU (not under autocast, whose projections would hand them
    bf16), no autograd, and the compiled `cpp` scan selected."""
    return (x.device.type == "cpu" and x.dtype == torch.float32 and not torch.is_grad_enabled()
            and not torch.is_autocast_enabled("cpu") and resolve_backend(None, on_cuda=False) == "cpp")
