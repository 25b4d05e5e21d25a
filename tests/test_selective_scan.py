"""Selective scan: every fast backend against the float64 sequential reference, and the dispatcher.

Error measure, per tensor: rel_err(fast, ref) = max|fast - ref| / max|ref| (the reference is float64, the fast
paths compute in float32). Every fast path must be within 1e-5 in the output, the last state and every gradient
(u, delta, A, B, C, D, z, delta_bias). Where a reference gradient is exactly zero (dA at L = 1: no earlier
state), the fast gradient must be zero up to 1e-12 absolute.
"""
from __future__ import annotations

import functools
import os
import warnings

import pytest
import torch

from encoders.ops import selective_scan as dispatch
from encoders.ops.selective_scan import BACKENDS, ENV_VAR, last_backend, selective_scan_fn
from encoders.ops.selective_scan_cpu import build_error, extensions_root

FAST = ("cpp", "torch")
TOL = 1e-5
NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def rel_err(fast, ref):
    diff = (fast.double() - ref).abs().max().item()
    scale = ref.abs().max().item()
    return diff / scale if scale > 0 else (0.0 if diff <= 1e-12 else float("inf"))


def make_inputs(batch=3, dim=4, length=7, nstate=16, groups=None, seed=0):
    """float64 leaf tensors in the value ranges a Mamba layer produces (A < 0, modest dt)."""
    g = torch.Generator().manual_seed(seed)
    rand = functools.partial(torch.randn, generator=g, dtype=torch.float64)
    bc_shape = (batch, nstate, length) if groups is None else (batch, groups, nstate, length)
    tensors = dict(
        u=rand(batch, dim, length),
        delta=rand(batch, dim, length) * 0.5 - 1.0,
        A=-torch.rand(dim, nstate, generator=g, dtype=torch.float64) * 4 - 0.1,
        B=rand(*bc_shape),
        C=rand(*bc_shape),
        D=rand(dim),
        z=rand(batch, dim, length),
        delta_bias=rand(dim) * 0.3,
    )
    return {k: v.requires_grad_() for k, v in tensors.items()}


def run(inputs, backend, dtype=None, softplus=True, grad_out=None):
    """Output, last state and the gradients of <out, grad_out> w.r.t. every input (None where not given)."""
    leaves = {k: (v.detach().to(dtype) if dtype else v.detach()).requires_grad_() if v is not None else None
              for k, v in inputs.items()}
    out, last = selective_scan_fn(**leaves, delta_softplus=softplus, return_last_state=True, backend=backend)
    assert last_backend() == backend
    grad_out = torch.ones_like(out) if grad_out is None else grad_out.to(out.dtype)
    out.backward(grad_out)
    grads = {k: v.grad if v is not None else None for k, v in leaves.items()}
    return out, last, grads


@functools.lru_cache(maxsize=None)
def reference(length, groups=None, nstate=16):
    """Computed once per shape, on one thread: the Python loop's ops are too small to gain from more."""
    inputs = make_inputs(length=length, groups=groups, nstate=nstate)
    grad_out = torch.randn(3, 4, length, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return inputs, grad_out, run(inputs, "ref", grad_out=grad_out)
    finally:
        torch.set_num_threads(threads)


def assert_matches_reference(backend, length, groups=None, nstate=16):
    inputs, grad_out, (ref_out, ref_last, ref_grads) = reference(length, groups, nstate)
    out, last, grads = run(inputs, backend, dtype=torch.float32, grad_out=grad_out)
    assert out.dtype == torch.float32 and out.shape == ref_out.shape
    errors = {"out": rel_err(out, ref_out), "last_state": rel_err(last, ref_last)}
    errors.update({f"d{k}": rel_err(grads[k], ref_grads[k]) for k in NAMES})
    assert all(e <= TOL for e in errors.values()), errors


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("length", [1, 7, 1569])
def test_fast_backend_matches_float64_reference(backend, length):
    assert_matches_reference(backend, length)


@pytest.mark.parametrize("backend", FAST)
def test_grouped_B_C_and_unpadded_state(backend):
    """(b, g, n, l) B and C, and d_state 5 (not a multiple of the SIMD width)."""
    assert_matches_reference(backend, 33, groups=2, nstate=5)


@pytest.mark.parametrize("backend", FAST)
def test_without_optional_inputs(backend):
    inputs = make_inputs(length=40)
    inputs.update(D=None, z=None, delta_bias=None)
    inputs["delta"] = (inputs["delta"].detach().exp() * 0.5).requires_grad_()  # dt > 0 without softplus
    ref_out, ref_last, ref_grads = run(inputs, "ref", softplus=False)
    out, last, grads = run(inputs, backend, dtype=torch.float32, softplus=False)
    assert rel_err(out, ref_out) <= TOL and rel_err(last, ref_last) <= TOL
    for k in ("u", "delta", "A", "B", "C"):
        assert rel_err(grads[k], ref_grads[k]) <= TOL, k
    assert grads["D"] is None and grads["z"] is None


@pytest.mark.parametrize("backend", FAST)
def test_bf16_inputs_compute_in_fp32_and_keep_dtype(backend):
    inputs = make_inputs(length=50)
    out32, _, _ = run(inputs, backend, dtype=torch.float32)
    out16, last16, grads16 = run(inputs, backend, dtype=torch.bfloat16)
    assert out16.dtype == torch.bfloat16 and last16.dtype == torch.float32
    assert all(grads16[k].dtype == torch.bfloat16 for k in NAMES)
    # only the inputs' rounding to bf16 separates the two
    assert rel_err(out16.float(), out32.double()) < 3e-2


def test_cpp_backward_is_deterministic():
    """dB/dC are reduced across channels through per-task partial sums: no races, same bits every time."""
    inputs = make_inputs(batch=2, dim=24, length=100)
    _, _, first = run(inputs, "cpp", dtype=torch.float32)
    _, _, second = run(inputs, "cpp", dtype=torch.float32)
    assert all(torch.equal(first[k], second[k]) for k in NAMES)


def test_return_last_state_off_returns_tensor():
    x = make_inputs(length=5)
    out = selective_scan_fn(**{k: v.detach().float() for k, v in x.items()}, backend="cpp")
    assert isinstance(out, torch.Tensor) and out.shape == (3, 4, 5)


# ---- dispatcher -------------------------------------------------------------------------------------------

def small_inputs(dtype=torch.float32):
    return {k: v.detach().to(dtype) for k, v in make_inputs(length=6).items()}


@pytest.mark.parametrize("backend", ["cpp", "torch", "ref"])
def test_force_backend_by_argument(backend, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    selective_scan_fn(**small_inputs(), backend=backend)
    assert last_backend() == backend


@pytest.mark.parametrize("backend", ["cpp", "torch", "ref"])
def test_force_backend_by_env_var(backend, monkeypatch):
    monkeypatch.setenv(ENV_VAR, backend.upper())
    selective_scan_fn(**small_inputs())
    assert last_backend() == backend


def test_argument_overrides_env_var(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "ref")
    selective_scan_fn(**small_inputs(), backend="torch")
    assert last_backend() == "torch"


def test_auto_on_cpu(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    selective_scan_fn(**small_inputs())
    assert last_backend() == ("cpp" if build_error() is None else "torch")
    selective_scan_fn(**small_inputs(torch.float64))
    assert last_backend() == "torch"  # the C++ kernel is fp32-only


def test_auto_falls_back_to_torch_with_one_warning_when_the_build_fails(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(dispatch, "build_error", lambda: "RuntimeError: no compiler")
    dispatch._cpp_usable.cache_clear()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            selective_scan_fn(**small_inputs())
            selective_scan_fn(**small_inputs())
        assert last_backend() == "torch"
        messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
        assert len(messages) == 1 and "no compiler" in messages[0]
    finally:
        dispatch._cpp_usable.cache_clear()


def test_unknown_backend_is_a_clear_error(monkeypatch):
    with pytest.raises(ValueError, match="unknown selective-scan backend 'triton'.*auto, cuda, cpp, torch, ref"):
        selective_scan_fn(**small_inputs(), backend="triton")
    monkeypatch.setenv(ENV_VAR, "fast")
    with pytest.raises(ValueError, match=f"'fast'.*{ENV_VAR}"):
        selective_scan_fn(**small_inputs())


def test_backend_device_and_dtype_mismatches_are_clear_errors():
    with pytest.raises(ValueError, match="'cuda' needs CUDA tensors"):
        selective_scan_fn(**small_inputs(), backend="cuda")
    with pytest.raises(ValueError, match="float32"):
        selective_scan_fn(**small_inputs(torch.float64), backend="cpp")
    assert set(BACKENDS) == {"auto", "cuda", "cpp", "torch", "ref"}


@pytest.mark.parametrize("name, bad, message", [
    ("u", torch.zeros(3, 4), "u must be"),
    ("delta", torch.zeros(3, 4, 5), "delta must"),
    ("A", torch.zeros(5, 16), "A must be"),
    ("A", torch.zeros(4, 16, dtype=torch.complex64), "complex A"),
    ("B", torch.zeros(3, 16, 5), "B must be"),
    ("C", torch.zeros(3, 3, 16, 6), "C must be"),
    ("D", torch.zeros(5), "D must be"),
    ("z", torch.zeros(3, 4, 5), "z must"),
    ("delta_bias", torch.zeros(4, 1), "delta_bias must be"),
])
def test_bad_shapes_name_the_argument(name, bad, message):
    inputs = small_inputs()
    inputs[name] = bad
    with pytest.raises(ValueError, match=message):
        selective_scan_fn(**inputs, backend="torch")


def test_extension_cache_dir_follows_torch_extensions_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    assert extensions_root() == tmp_path
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR")
    assert extensions_root().parts[-3:] == (".cache", "videomamba", "torch_extensions")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_tensors_match_reference():
    inputs = make_inputs(length=64)
    ref_out, _, ref_grads = run(inputs, "ref")
    cuda_inputs = {k: v.detach().float().cuda() for k, v in inputs.items()}
    out = selective_scan_fn(**cuda_inputs, delta_softplus=True)
    assert last_backend() in ("cuda", "torch")
    assert rel_err(out.cpu(), ref_out) <= TOL


def test_the_cache_folder_is_keyed_by_simd_level_and_kernel_source(monkeypatch, tmp_path):
    from encoders.ops import selective_scan_cpu as cpu

    names = {cpu.build_name(level) for level in ("AVX512", "AVX2", "DEFAULT")}
    assert len(names) == 3 and all(n.startswith("videomamba_selective_scan_") for n in names)
    changed = tmp_path / "selective_scan.cpp"
    changed.write_bytes(cpu.CSRC.read_bytes() + b"\n// edited\n")
    before = cpu.build_name("AVX2")
    monkeypatch.setattr(cpu, "CSRC", changed)
    assert cpu.build_name("AVX2") != before


def test_a_build_killed_half_way_does_not_block_the_next_one(tmp_path):
    """A killed build leaves torch's lock file behind; the next process must still get the kernel (in a fresh cache
    folder, so this really compiles)."""
    import subprocess
    import sys

    from encoders.ops import selective_scan_cpu as cpu

    build_dir = tmp_path / cpu.build_name(torch.backends.cpu.get_cpu_capability())
    build_dir.mkdir()
    (build_dir / "lock").write_text("")  # what a SIGKILL during cpp_extension.load leaves
    code = "from encoders.ops.selective_scan_cpu import build_error; print(build_error())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TORCH_EXTENSIONS_DIR": str(tmp_path)})
    assert done.returncode == 0 and done.stdout.strip() == str(build_error()), done.stderr
    assert not (build_dir / "lock").exists()
