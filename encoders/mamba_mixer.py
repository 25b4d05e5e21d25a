"""The bidirectional Mamba mixer of VideoMamba (mamba-ssm 1.0.1 as modified by OpenGVLab, `bimamba=True`).

One input projection gives x and the gate z; a forward SSM reads the sequence as given and a backward SSM, with
its own conv1d/x_proj/dt_proj/A/D, reads the whole (x, z) reversed; the two outputs are summed (not averaged)
and projected back. Parameter names equal the official state dict, so checkpoints load key for key.

A mixer can also read the tokens along extra orders (the paper's spatiotemporal scans, see `scan_order.py`),
and, for long inputs at inference, process the sequence in chunks that carry the SSM state and the conv tail,
which keeps activations O(chunk) instead of O(L).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from encoders.ops.causal_conv1d import causal_conv1d_fn
from encoders.ops.scan_channels_last import channels_last_usable, conv_silu_channels_last, scan_channels_last
from encoders.ops.selective_scan import selective_scan_fn
from encoders.scan_order import gather_along, scatter_along


class SSMBranch(NamedTuple):
    """The parameters one scan direction uses, gathered so both directions share one code path."""

    conv: nn.Conv1d
    x_proj: nn.Linear
    dt_proj: nn.Linear
    A_log: nn.Parameter
    D: nn.Parameter


class BiMambaMixer(nn.Module):
    """Bidirectional Mamba; `forward(hidden (B, L, d_model), orders=None) -> (B, L, d_model)`.

    `orders`: optional `ScanPaths` (from `scan_order.py`) listing the token orders the forward and backward SSMs
    read; None is the official mixer (forward reads the sequence, backward reads it reversed).
    `chunk_size`: if set, inference (grad disabled) processes the sequence in chunks of that many tokens.
    """

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2,
                 dt_rank: int | str = "auto", dt_min: float = 0.001, dt_max: float = 0.1, dt_init: str = "random",
                 dt_scale: float = 1.0, dt_init_floor: float = 1e-4, conv_bias: bool = True, bias: bool = False,
                 layer_idx: int | None = None, bimamba: bool = True, chunk_size: int | None = None):
        super().__init__()
        if dt_init not in ("random", "constant"):
            raise ValueError(f"dt_init must be 'random' or 'constant', got {dt_init!r}")
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner = expand * d_model
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.layer_idx, self.bimamba = layer_idx, bimamba
        self.chunk_size = chunk_size

        # Own parameters first, children after: this reproduces the official state-dict key order.
        self.A_log = nn.Parameter(self._s4d_real_log())
        self.D = nn.Parameter(torch.ones(self.d_inner))
        if bimamba:
            self.A_b_log = nn.Parameter(self._s4d_real_log())
            self.D_b = nn.Parameter(torch.ones(self.d_inner))
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias)
        self.conv1d, self.x_proj, self.dt_proj = self._branch_modules(conv_bias)
        if bimamba:
            self.conv1d_b, self.x_proj_b, self.dt_proj_b = self._branch_modules(conv_bias)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)
        for p in (self.A_log, self.D, *((self.A_b_log, self.D_b) if bimamba else ())):
            p._no_weight_decay = True
        self._init_dt(self.dt_proj, dt_init, dt_scale, dt_min, dt_max, dt_init_floor)

    def _s4d_real_log(self) -> torch.Tensor:
        """S4D-real initialisation: A[:, n] = -(n + 1), stored as log(n + 1)."""
        return torch.log(torch.arange(1, self.d_state + 1, dtype=torch.float32)).repeat(self.d_inner, 1)

    def _branch_modules(self, conv_bias: bool):
        conv = nn.Conv1d(self.d_inner, self.d_inner, self.d_conv, groups=self.d_inner,
                         padding=self.d_conv - 1, bias=conv_bias)
        x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * self.d_state, bias=False)
        dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        return conv, x_proj, dt_proj

    def _init_dt(self, dt_proj: nn.Linear, dt_init, dt_scale, dt_min, dt_max, dt_init_floor):
        """Official dt init (forward branch only): weight scaled by dt_rank^-0.5, bias = softplus^-1(dt)."""
        std = self.dt_rank ** -0.5 * dt_scale
        with torch.no_grad():
            if dt_init == "constant":
                dt_proj.weight.fill_(std)
            else:
                dt_proj.weight.uniform_(-std, std)
            dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
            dt = dt.clamp(min=dt_init_floor)
            dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        dt_proj.bias._no_reinit = True

    def branches(self) -> tuple[SSMBranch, SSMBranch | None]:
        fwd = SSMBranch(self.conv1d, self.x_proj, self.dt_proj, self.A_log, self.D)
        bwd = SSMBranch(self.conv1d_b, self.x_proj_b, self.dt_proj_b, self.A_b_log, self.D_b) if self.bimamba else None
        return fwd, bwd

    def forward(self, hidden_states: torch.Tensor, orders=None) -> torch.Tensor:
        if hidden_states.dim() != 3 or hidden_states.shape[-1] != self.d_model:
            raise ValueError(f"BiMambaMixer expects (B, L, {self.d_model}), got {tuple(hidden_states.shape)}")
        fwd_orders = orders.forward if orders is not None else (None,)
        bwd_orders = orders.backward if orders is not None else (None,)
        fwd, bwd = self.branches()
        if bwd is None:
            bwd_orders = ()
        if self.chunk_size and not torch.is_grad_enabled():
            return self._forward_chunked(hidden_states, fwd, bwd, fwd_orders, bwd_orders)
        if orders is None and channels_last_usable(hidden_states):
            return self._forward_channels_last(hidden_states, fwd, bwd)
        return self._forward_full(hidden_states, fwd, bwd, fwd_orders, bwd_orders)

    # ---- CPU inference: (B, L, channels) rows throughout, no transposed or flipped copies ----

    def _forward_channels_last(self, hidden_states, fwd, bwd):
        xz = F.linear(hidden_states, self.in_proj.weight, self.in_proj.bias)  # (B, L, 2*d_inner)
        x, z = xz.split(self.d_inner, dim=-1)
        out = x_conv = None
        for branch, reverse in ((fwd, False), (bwd, True))[:2 if bwd is not None else 1]:
            x_conv = conv_silu_channels_last(x, branch.conv.weight[:, 0], branch.conv.bias, reverse, out=x_conv)
            x_dbl = F.linear(x_conv, branch.x_proj.weight)  # (B, L, dt_rank + 2 * d_state)
            out = scan_channels_last(x_conv, branch.dt_proj.weight, -torch.exp(branch.A_log.float()), x_dbl, z=z,
                                     D=branch.D.float(), delta_bias=branch.dt_proj.bias.float(), reverse=reverse,
                                     out=out)
            del x_dbl
        del xz, x, z, x_conv
        return F.linear(out, self.out_proj.weight, self.out_proj.bias)

    # ---- whole-sequence path (training and default inference), layout (B, channels, L) like mamba-ssm ----

    def _in_proj(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """(B, L, d_model) -> xz (B, 2*d_inner, L), contiguous along L as the scan kernels want."""
        xz = torch.matmul(self.in_proj.weight, hidden_states.transpose(1, 2))
        if self.in_proj.bias is not None:
            xz = xz + self.in_proj.bias.to(xz.dtype)[:, None]
        return xz

    def _forward_full(self, hidden_states, fwd, bwd, fwd_orders, bwd_orders):
        xz = self._in_proj(hidden_states)
        reads = [(fwd, index, False) for index in fwd_orders] + [(bwd, index, True) for index in bwd_orders]
        out = None
        for n, (branch, index, reverse) in enumerate(reads):
            seq = xz if index is None else gather_along(xz, index, -1)
            if reverse:
                seq = seq.flip(-1)
            if n == len(reads) - 1:
                xz = None  # the last read owns its copy: free the projection before scanning
            y = self._scan(seq, branch)
            del seq
            if reverse:
                y = y.flip(-1)
            if index is not None:
                y = scatter_along(y, index, -1)
            out = y if out is None else out.add_(y)
            del y
        return F.linear(out.transpose(1, 2), self.out_proj.weight, self.out_proj.bias)

    def _scan(self, xz: torch.Tensor, br: SSMBranch) -> torch.Tensor:
        """One direction: causal depthwise conv + SiLU, input-dependent dt/B/C, selective scan, gate by silu(z)."""
        x, z = xz.chunk(2, dim=1)
        x = causal_conv1d_silu(x, br.conv.weight, br.conv.bias)
        dt, B, C = self._dt_b_c(x, br)
        return selective_scan_fn(x, dt, -torch.exp(br.A_log.float()), B, C, br.D.float(), z=z,
                                 delta_bias=br.dt_proj.bias.float(), delta_softplus=True)

    def _dt_b_c(self, x: torch.Tensor, br: SSMBranch):
        """x (B, d_inner, L) -> dt (B, d_inner, L) before bias/softplus, B and C (B, d_state, L)."""
        x_dbl = F.linear(x.transpose(1, 2), br.x_proj.weight)  # (B, L, dt_rank + 2 * d_state)
        dt, B, C = x_dbl.split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = torch.matmul(br.dt_proj.weight.to(dt.dtype), dt.transpose(1, 2))
        return dt, B.transpose(1, 2).contiguous(), C.transpose(1, 2).contiguous()

    # ---- chunked inference path: O(chunk) activations, state and conv tail carried across chunks ----

    def _forward_chunked(self, hidden_states, fwd, bwd, fwd_orders, bwd_orders):
        out = None
        for branch, paths, reverse in ((fwd, fwd_orders, False), (bwd, bwd_orders, True)):
            for index in paths:
                seq = hidden_states if index is None else gather_along(hidden_states, index, 1)
                y = self._run_chunks(seq, branch, reverse)
                del seq
                if index is not None:
                    y = scatter_along(y, index, 1)
                out = y if out is None else out.add_(y)
                del y
        return out

    def _run_chunks(self, seq: torch.Tensor, br: SSMBranch, reverse: bool) -> torch.Tensor:
        """Scan `seq` (B, L, d_model) in one direction chunk by chunk; returns the projected output (B, L, d_model)."""
        batch, length, _ = seq.shape
        A = -torch.exp(br.A_log.float())
        state, out = None, None
        tail = seq.new_zeros(batch, self.d_inner, self.d_conv - 1)  # zero history = causal zero padding
        starts = range(0, length, self.chunk_size)
        for start in (reversed(starts) if reverse else starts):
            stop = min(start + self.chunk_size, length)
            xz = self._in_proj(seq[:, start:stop])
            if reverse:
                xz = xz.flip(-1)
            y, state, tail = self._scan_chunk(xz, br, A, state, tail)
            del xz
            if reverse:
                y = y.flip(-1)
            y = F.linear(y.transpose(1, 2), self.out_proj.weight, self.out_proj.bias)
            if out is None:
                out = y.new_empty(batch, length, self.d_model)
            out[:, start:stop] = y
        return out

    def _scan_chunk(self, xz, br: SSMBranch, A, state, tail):
        """One chunk continuing from `state` (B, d_inner, d_state) and `tail` (the last d_conv-1 conv inputs)."""
        x, z = xz.chunk(2, dim=1)
        x_in = torch.cat([tail.to(x.dtype), x], dim=-1)
        new_tail = x_in[..., x_in.shape[-1] - (self.d_conv - 1):].contiguous()
        x = causal_conv1d_silu(x_in, br.conv.weight, br.conv.bias)[..., self.d_conv - 1:]
        del x_in
        dt, B, C = self._dt_b_c(x, br)
        delta = F.softplus(dt.float() + br.dt_proj.bias.float()[:, None])
        if state is not None:
            x, delta, B, C, z = _prepend_state(state, x, delta, B, C, z)
        y, last = selective_scan_fn(x, delta, A, B, C, br.D.float(), z=z, return_last_state=True)
        if state is not None:
            y = y[..., self.d_state:]
        return y, last, new_tail

    def set_chunk_size(self, chunk_size: int | None):
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive number of tokens or None, got {chunk_size}")
        self.chunk_size = chunk_size


def causal_conv1d_silu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """SiLU(depthwise causal conv) of x (B, C, L) with weight (C, 1, K). On CUDA: `causal_conv1d_fn` (the fused
    kernel when installed). On CPU: K shifted multiply-adds in place, which beats the grouped F.conv1d there
    (oneDNN's depthwise conv is slow for this shape) and needs no padded copy."""
    if x.is_cuda:
        return causal_conv1d_fn(x, weight[:, 0], bias, activation="silu")
    taps = weight.shape[-1]
    w = weight[:, 0].to(x.dtype)
    out = x * w[:, taps - 1, None]
    if bias is not None:
        out += bias.to(x.dtype)[:, None]
    for k in range(taps - 1):
        shift = taps - 1 - k
        if shift < x.shape[-1]:
            out[..., shift:].addcmul_(x[..., :-shift], w[:, k, None])
    return F.silu(out, inplace=not torch.is_grad_enabled())


STATE_STEP = 1e-20  # delta of the state-loading steps: exp(STATE_STEP * A) == 1 in fp32 for |A| < 1e12


def _prepend_state(state, x, delta, B, C, z):
    """Load the carried state h0 (b, d, n) into a zero-initialised scan with n extra leading steps.

    Step j has delta = STATE_STEP (no decay: exp(delta*A) rounds to 1), B = e_j and u = h0[:, :, j] / delta,
    so it adds exactly h0[:, :, j] to state entry j; C = 0 and z = 0 make its outputs 0 (they are dropped).
    The scan kernels take no initial state; this gives them one at the cost of n steps.
    """
    batch, d, n = state.shape
    u0 = (state / STATE_STEP).to(x.dtype)
    delta0 = delta.new_full((batch, d, n), STATE_STEP)
    B0 = torch.eye(n, dtype=B.dtype, device=B.device).expand(batch, n, n)
    return (torch.cat([u0, x], -1), torch.cat([delta0, delta], -1), torch.cat([B0, B], -1),
            torch.cat([B0.new_zeros(batch, n, n), C], -1), torch.cat([z.new_zeros(batch, d, n), z], -1))
