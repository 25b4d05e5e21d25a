"""Selective-scan speed: the compiled C++ kernel and the pure-PyTorch scan against the sequential reference,
measured side by side in one run.

One direction of a VideoMamba-Ti layer on an 8-frame clip: B=2, L=1569 (1 + 8*14*14), d_inner=384, N=16, fp32,
with D, z, delta_bias and softplus as the model calls it. Also times the forward at the two model sizes.

    .venv/bin/python benchmarks/bench_scan.py [--repeats 5] [--ref-backward-repeats 1] [--threads N] [--clock cpu]

On a machine shared with other jobs, `--threads 1 --clock cpu` (this process's CPU time on one thread) is far
less disturbed than wall time; `--ref-backward-repeats 0` skips the minute-long reference backward.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from encoders.ops.selective_scan import last_backend, selective_scan_fn


def make_inputs(batch, dim, length, nstate=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(
        u=torch.randn(batch, dim, length, generator=g),
        delta=torch.randn(batch, dim, length, generator=g) * 0.5 - 1.0,
        A=-torch.arange(1, nstate + 1, dtype=torch.float32).repeat(dim, 1),
        B=torch.randn(batch, nstate, length, generator=g),
        C=torch.randn(batch, nstate, length, generator=g),
        D=torch.ones(dim),
        z=torch.randn(batch, dim, length, generator=g),
        delta_bias=torch.randn(dim, generator=g) * 0.3,
    )


def time_call(inputs, backend, backward, repeats, clock=time.perf_counter):
    """Median seconds of `repeats` calls (after one warm-up call when repeats > 1); None when repeats is 0."""
    if repeats == 0:
        return None

    def once():
        leaves = {k: v.clone().requires_grad_(backward) for k, v in inputs.items()}
        start = clock()
        out = selective_scan_fn(**leaves, delta_softplus=True, backend=backend)
        if backward:
            out.sum().backward()
        elapsed = clock() - start
        assert last_backend() == backend
        return elapsed

    if repeats > 1:
        once()
    return statistics.median(once() for _ in range(repeats))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per fast measurement (median)")
    parser.add_argument("--ref-backward-repeats", type=int, default=1,
                        help="timed calls of the reference forward+backward (about a minute each)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall time, or this process's CPU time (use with --threads 1)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.perf_counter if args.clock == "wall" else time.process_time

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}, {args.clock} clock")
    inputs = make_inputs(batch=2, dim=384, length=1569)
    print("\nB=2, L=1569, d_inner=384, N=16, fp32 (one direction)")
    print(f"{'backend':8} {'forward ms':>11} {'vs ref':>8} {'fwd+bwd ms':>11} {'vs ref':>8}")
    rows = {}
    for backend in ("cpp", "torch", "ref"):
        fwd = time_call(inputs, backend, False, args.repeats, clock)
        bwd_repeats = args.ref_backward_repeats if backend == "ref" else args.repeats
        fwd_bwd = time_call(inputs, backend, True, bwd_repeats, clock)
        rows[backend] = (fwd, fwd_bwd)
    ref_fwd, ref_fwd_bwd = rows["ref"]
    for backend, (fwd, fwd_bwd) in rows.items():
        both = (f"{fwd_bwd * 1e3:11.1f} {ref_fwd_bwd / fwd_bwd:7.1f}x" if ref_fwd_bwd else
                f"{fwd_bwd * 1e3:11.1f} {'-':>8}" if fwd_bwd else f"{'-':>11} {'-':>8}")
        print(f"{backend:8} {fwd * 1e3:11.1f} {ref_fwd / fwd:7.1f}x {both}")

    print("\ncpp forward at the model sizes (B=1, L=1569, N=16)")
    for dim, model in ((384, "VideoMamba-Ti, d_inner 384"), (1152, "VideoMamba-M, d_inner 1152")):
        ms = time_call(make_inputs(batch=1, dim=dim, length=1569), "cpp", False, args.repeats, clock) * 1e3
        print(f"  d={dim:5d} ({model}): {ms:.1f} ms")


if __name__ == "__main__":
    main()
