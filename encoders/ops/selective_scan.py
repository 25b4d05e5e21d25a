"""One entry point for the selective scan, with the signature and meaning of mamba-ssm's `selective_scan_fn`.

Backends, in the order `auto` tries them:
  cuda  mamba-ssm's fused CUDA kernel (tensors on CUDA and mamba-ssm installed)
  cpp   the project's compiled CPU kernel (ops/csrc/selective_scan.cpp); if it does not build, `auto`
        warns once with the reason and uses `torch`
  torch the portable pure-PyTorch chunked scan (any device)
  ref   the sequential reference (slow; for tests)
Force one with `backend=` or the environment variable VIDEOMAMBA_SCAN_BACKEND; `last_backend()` says which ran.
bf16/fp16 inputs are computed in fp32 and returned in the input dtype; `last_state` is fp32.
"""
from __future__ import annotations

import functools
import os
import warnings

import torch

from encoders.ops.selective_scan_cpu import build_error, selective_scan_cpu
from encoders.ops.selective_scan_ref import selective_scan_ref
from encoders.ops.selective_scan_torch import selective_scan_torch

BACKENDS = ("auto", "cuda", "cpp", "torch", "ref")
ENV_VAR = "VIDEOMAMBA_SCAN_BACKEND"
_last = {"backend": None}


def last_backend() -> str | None:
    """The backend that ran the most recent scan in this process (`selective_scan_fn`, or `cpp` for the
    channels-last inference kernels)."""
    return _last["backend"]


def note_backend(name: str):
    _last["backend"] = name


@functools.lru_cache(maxsize=None)
def _mamba_ssm_scan():
    """mamba-ssm's CUDA selective_scan_fn, or None when mamba-ssm (with its kernels) is not importable."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception:
        return None
    return selective_scan_fn


@functools.lru_cache(maxsize=None)
def _cpp_usable() -> bool:
    error = build_error()
    if error is not None:
        warnings.warn(f"selective scan: the C++ CPU kernel is unavailable, using the pure-PyTorch scan "
                      f"instead ({error})", RuntimeWarning, stacklevel=3)
    return error is None


def resolve_backend(backend: str | None, on_cuda: bool, float64: bool = False) -> str:
    """The concrete backend `selective_scan_fn` would use for tensors on CUDA (or not), float64 (or not)."""
    requested = (backend or os.environ.get(ENV_VAR) or "auto").lower()
    if requested not in BACKENDS:
        source = "backend argument" if backend else f"environment variable {ENV_VAR}"
        raise ValueError(f"unknown selective-scan backend {requested!r} (from the {source}); "
                         f"choose one of {', '.join(BACKENDS)}")
    if requested == "cuda":
        if not on_cuda:
            raise ValueError("selective-scan backend 'cuda' needs CUDA tensors")
        if _mamba_ssm_scan() is None:
            raise RuntimeError("selective-scan backend 'cuda' needs mamba-ssm with its CUDA kernels installed "
                               "(pip install '.[gpu]')")
    if requested == "cpp" and on_cuda:
        raise ValueError("selective-scan backend 'cpp' runs on CPU tensors only; these are on CUDA")
    if requested == "cpp" and float64:
        raise ValueError("selective-scan backend 'cpp' computes in float32; use 'torch' or 'ref' for float64")
    if requested != "auto":
        return requested
    if on_cuda:
        return "cuda" if _mamba_ssm_scan() is not None else "torch"
    return "cpp" if not float64 and _cpp_usable() else "torch"


def _check_inputs(u, delta, A, B, C, D, z, delta_bias):
    """Raise ValueError naming the argument whose shape or type does not fit mamba-ssm's contract."""
    if u.dim() != 3:
        raise ValueError(f"selective_scan_fn: u must be (batch, dim, length), got shape {tuple(u.shape)}")
    batch, dim, length = u.shape
    if delta.shape != u.shape:
        raise ValueError(f"selective_scan_fn: delta must have u's shape {tuple(u.shape)}, got {tuple(delta.shape)}")
    if A.is_complex():
        raise ValueError("selective_scan_fn: complex A is not supported; A must be real (dim, d_state)")
    if A.dim() != 2 or A.shape[0] != dim:
        raise ValueError(f"selective_scan_fn: A must be (dim={dim}, d_state), got shape {tuple(A.shape)}")
    n = A.shape[1]
    for name, t in (("B", B), ("C", C)):
        ok = (t.dim() == 3 and t.shape == (batch, n, length)) or (
            t.dim() == 4 and t.shape[0] == batch and t.shape[2:] == (n, length) and dim % t.shape[1] == 0)
        if not ok:
            raise ValueError(f"selective_scan_fn: {name} must be (batch={batch}, d_state={n}, length={length}) "
                             f"or (batch, groups, d_state, length) with groups dividing dim={dim}; "
                             f"got shape {tuple(t.shape)}")
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and t.shape != (dim,):
            raise ValueError(f"selective_scan_fn: {name} must be (dim={dim},), got shape {tuple(t.shape)}")
    if z is not None and z.shape != u.shape:
        raise ValueError(f"selective_scan_fn: z must have u's shape {tuple(u.shape)}, got {tuple(z.shape)}")
    for name, t in (("u", u), ("delta", delta), ("A", A), ("B", B), ("C", C), ("D", D), ("z", z),
                    ("delta_bias", delta_bias)):
        if t is not None and not t.is_floating_point():
            raise ValueError(f"selective_scan_fn: {name} must be a floating-point tensor, got {t.dtype}")
        if t is not None and t.device != u.device:
            raise ValueError(f"selective_scan_fn: {name} is on {t.device} but u is on {u.device}")


def selective_scan_fn(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                      return_last_state=False, backend: str | None = None):
    """out = (scan(u) + D*u) * silu(z), shapes as mamba-ssm: u, delta, z (b, d, l); A (d, n);
    B, C (b, n, l) or (b, g, n, l); D, delta_bias (d,). With return_last_state also the (b, d, n) final state."""
    _check_inputs(u, delta, A, B, C, D, z, delta_bias)
    name = resolve_backend(backend, u.is_cuda, u.dtype == torch.float64)
    note_backend(name)
    if name == "cuda":
        return _mamba_ssm_scan()(u, delta, A, B, C, D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus,
                                 return_last_state=return_last_state)
    if name == "cpp":
        return selective_scan_cpu(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    scan = selective_scan_torch if name == "torch" else selective_scan_ref
    return scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
