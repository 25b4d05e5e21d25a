"""Seconds per clip for one VideoMamba forward on CPU: Ti and M, 8 frames at 224x224, batch 1, fp32, no_grad.

Targets: Ti <= 0.45 s and M <= 2.8 s, and >= 25x the official code's CPU path in the same run. The official code
on CPU runs mamba-ssm's sequential `selective_scan_ref` through the (batch, channels, length) mixer; the `ref`
backend (VIDEOMAMBA_SCAN_BACKEND=ref) reproduces exactly that, so `--backends auto ref` prints both and their ratio.
Each model is warmed up once, then timed --repeats times (--ref-repeats for `ref`, which takes ~15-45 s a clip);
the median wall time is reported, with the scan backend used and the process CPU time. The process keeps freed
memory in its heap (`encoders.heap`), as the service and extraction do.

    .venv/bin/python benchmarks/bench_inference.py --backends auto ref
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def seconds_per_clip(name: str, frames: int, repeats: int, chunk: int | None):
    """(median wall s, wall s of each run, median CPU s of the process, scan backend)."""
    import torch

    from encoders import create_model
    from encoders.ops.selective_scan import last_backend

    torch.manual_seed(0)
    model = create_model(name, num_frames=frames, scan_chunk_size=chunk).eval()
    video = torch.randn(1, 3, frames, 224, 224)
    times, cpu = [], []
    with torch.no_grad():
        model(video, keep_temporal=True)
        for _ in range(repeats):
            start, cpu_start = time.perf_counter(), time.process_time()
            model(video, keep_temporal=True)
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - cpu_start)
    return statistics.median(times), times, statistics.median(cpu), last_backend()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["videomamba_tiny", "videomamba_middle"])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backends", nargs="+", default=["auto", "ref"])
    parser.add_argument("--ref-repeats", type=int, default=1)
    parser.add_argument("--scan-chunk", type=int, default=0, help="chunked inference size in tokens (0 = off)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = parser.parse_args()
    import torch

    from encoders.heap import retain_freed_memory

    if args.threads:
        torch.set_num_threads(args.threads)
    heap = retain_freed_memory()

    print(f"# {args.frames}x224x224, batch 1, fp32, no_grad, {torch.get_num_threads()} threads, "
          f"scan_chunk_size={args.scan_chunk or None}, "
          f"retain_freed_memory={heap}")
    print("| model | backend | median s/clip | runs (s) | median CPU s/clip |")
    print("|---|---|---|---|---|")
    medians = {}
    for name in args.models:
        for backend in args.backends:
            os.environ["VIDEOMAMBA_SCAN_BACKEND"] = backend
            repeats = args.ref_repeats if backend == "ref" else args.repeats
            median, times, cpu, used = seconds_per_clip(name, args.frames, repeats, args.scan_chunk or None)
            medians[name, used] = median
            print(f"| {name} | {used} | {median:.3f} | {', '.join(f'{t:.2f}' for t in times)} | {cpu:.2f} |",
                  flush=True)
    for name in args.models:
        fast = [(used, m) for (n, used), m in medians.items() if n == name and used != "ref"]
        if (name, "ref") in medians:
            for used, m in fast:
                print(f"# {name}: {used} is {medians[name, 'ref'] / m:.1f}x the official CPU path (ref)")


if __name__ == "__main__":
    main()
