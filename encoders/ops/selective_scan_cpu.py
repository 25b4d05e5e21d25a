"""The compiled CPU selective scan: builds csrc/ once per machine and wraps the scan in autograd.

The extension is compiled for the SIMD level torch itself runs at (AVX-512, AVX2, or plain scalar code) and
cached under $TORCH_EXTENSIONS_DIR, or ~/.cache/videomamba/torch_extensions when that is unset, in a folder named by
that level and a hash of the kernel's source and flags: two checkouts, or a changed kernel, never rebuild each
other's. A build killed half-way leaves torch's lock file behind, which would make every later process wait on it
forever; builds take an OS lock (freed when its process dies) and clear such a leftover under it. The backward
pass recomputes each row's states instead of saving (b, d, l, n) states, so memory stays O(b·d·l).
Gradients do not flow through `last_state` (as in mamba-ssm).
"""
from __future__ import annotations

import fcntl
import functools
import hashlib
import os
from pathlib import Path

import torch
import torch.nn.functional as F

CSRC = Path(__file__).parent / "csrc" / "selective_scan.cpp"
# Built into the same extension: the channels-last inference kernels and the header both files share.
EXTRA_SOURCES = (CSRC.parent / "scan_channels_last.cpp",)
HEADERS = (CSRC.parent / "vec_math.h",)

# ATen's Vectorized<float> picks its SIMD width from these macros; they must match the -m flags.
ISA_FLAGS = {
    "AVX512": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma",
               "-DCPU_CAPABILITY_AVX512", "-DCPU_CAPABILITY=AVX512"],
    "AVX2": ["-mavx2", "-mfma", "-DCPU_CAPABILITY_AVX2", "-DCPU_CAPABILITY=AVX2"],
}
SCALAR_FLAGS = ["-DCPU_CAPABILITY=DEFAULT"]
BUILD_FLAGS = ["-O3", "-fopenmp"]


def extensions_root() -> Path:
    root = os.environ.get("TORCH_EXTENSIONS_DIR")
    return Path(root) if root else Path.home() / ".cache" / "videomamba" / "torch_extensions"


def build_name(capability: str) -> str:
    """The extension's name and cache folder for a SIMD level: the level, then a hash of the source and flags."""
    isa = ISA_FLAGS.get(capability, SCALAR_FLAGS)
    level = capability.lower() if capability in ISA_FLAGS else "scalar"
    source = b"".join(path.read_bytes() for path in (CSRC, *EXTRA_SOURCES, *HEADERS))
    digest = hashlib.sha256(source + " ".join([*BUILD_FLAGS, *isa]).encode()).hexdigest()[:12]
    return f"videomamba_selective_scan_{level}_{digest}"


@functools.lru_cache(maxsize=None)
def _build():
    """(module, None) once built, or (None, reason) if the build failed; tried once per process."""
    from torch.utils import cpp_extension

    capability = torch.backends.cpu.get_cpu_capability()
    name = build_name(capability)
    build_dir = extensions_root() / name
    try:
        build_dir.mkdir(parents=True, exist_ok=True)
        with open(build_dir / "build.flock", "w") as held:
            fcntl.flock(held, fcntl.LOCK_EX)  # one build at a time; the OS frees it if the holder dies
            (build_dir / "lock").unlink(missing_ok=True)  # torch's own lock: only a killed build leaves it here
            module = cpp_extension.load(
                name=name, sources=[str(CSRC), *map(str, EXTRA_SOURCES)], build_directory=str(build_dir),
                extra_cflags=[*BUILD_FLAGS, *ISA_FLAGS.get(capability, SCALAR_FLAGS)], extra_ldflags=["-fopenmp"],
                verbose=False)
    except Exception as exc:  # compiler missing, headers broken, ...: the caller falls back
        return None, _first_error_line(exc)
    return module, None


def _first_error_line(exc: Exception) -> str:
    """The compiler's first `error:` line when there is one: ninja's own last line says nothing useful."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    return f"{type(exc).__name__}: {(errors or lines or [repr(exc)])[0]}"


def load_extension():
    """The compiled module; raises RuntimeError with the build failure otherwise."""
    module, error = _build()
    if module is None:
        raise RuntimeError(f"the C++ selective-scan extension did not build ({error})")
    return module


def build_error() -> str | None:
    """None when the extension is usable, else why it is not (building it first if needed)."""
    return _build()[1]


def _padded_state(n: int, width: int) -> int:
    return -(-n // width) * width


def _as_float(t):
    return None if t is None else t.float().contiguous()


class SelectiveScanCpu(torch.autograd.Function):
    """Autograd wrapper: fp32 compute, outputs and gradients in the inputs' dtypes."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        ext = load_extension()
        n = A.shape[1]
        pad = _padded_state(n, ext.vector_width()) - n
        Bg = B if B.dim() == 4 else B.unsqueeze(1)
        Cg = C if C.dim() == 4 else C.unsqueeze(1)
        prepared = (
            u.float().contiguous(),
            delta.float().contiguous(),
            F.pad(A.float(), (0, pad)).contiguous(),
            F.pad(Bg.float().transpose(-1, -2), (0, pad)).contiguous(),
            F.pad(Cg.float().transpose(-1, -2), (0, pad)).contiguous(),
            _as_float(D), _as_float(z), _as_float(delta_bias),
        )
        out, last_state = ext.forward(*prepared, delta_softplus)
        ctx.save_for_backward(*prepared)
        ctx.softplus = delta_softplus
        ctx.meta = (n, B.shape, C.shape, [t.dtype if t is not None else None
                                          for t in (u, delta, A, B, C, D, z, delta_bias)])
        ctx.mark_non_differentiable(last_state)
        return out.to(u.dtype), last_state[..., :n]

    @staticmethod
    def backward(ctx, dout, _dlast_state):
        ext = load_extension()
        n, b_shape, c_shape, dtypes = ctx.meta
        grads = ext.backward(dout.float().contiguous(), *ctx.saved_tensors, ctx.softplus,
                             torch.get_num_threads())
        du, ddelta, dA, dB, dC, dD, dz, ddelta_bias = grads
        dA = dA[:, :n]
        dB = dB[..., :n].transpose(-1, -2).reshape(b_shape)
        dC = dC[..., :n].transpose(-1, -2).reshape(c_shape)
        grads = (du, ddelta, dA, dB, dC, dD, dz, ddelta_bias)
        grads = tuple(g.to(dt) if dt is not None else None for g, dt in zip(grads, dtypes))
        return (*grads, None)


def selective_scan_cpu(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                       return_last_state=False):
    """mamba-ssm's selective_scan_fn on the compiled CPU kernel (inputs already validated)."""
    out, last_state = SelectiveScanCpu.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    return (out, last_state) if return_last_state else out
