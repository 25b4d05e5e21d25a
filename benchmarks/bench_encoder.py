"""VideoMamba-Ti vs ViT-Ti (joint space-time attention) on CPU: clips/s and peak forward memory vs frames.

Every (model, frames) runs in a fresh subprocess: build the model, prime it once on a single frame (loads
kernels, starts threads), release cached heap memory (malloc_trim), reset the kernel's peak-RSS counter
(/proc/self/clear_refs = 5), then run one forward and read VmHWM - VmRSS_before = peak extra memory of that
forward (activations and temporaries; the weights are already resident). Then timed forwards until
--min-seconds have passed. Batch 1, fp32, no_grad, 224x224. VideoMamba mixes the whole sequence at once by
default (the channels-last CPU path); --scan-chunk N mixes it in chunks of N tokens (less memory, slower).

    .venv/bin/python benchmarks/bench_encoder.py --frames 8 16 32 64
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _proc_status_kb(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def build(name: str, frames: int, chunk: int | None):
    sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
    if name == "vit_tiny":
        from vit_baseline import vit_tiny

        return vit_tiny(num_frames=frames)
    from encoders import create_model

    return create_model(name, num_frames=frames, scan_chunk_size=chunk)


def measure(name: str, frames: int, chunk: int | None, min_seconds: float, size: int, threads: int) -> dict:
    import torch

    from encoders.heap import retain_freed_memory

    if threads:
        torch.set_num_threads(threads)
    retain_freed_memory()  # both models alike, as the service runs them
    torch.manual_seed(0)
    model = build(name, frames, chunk).eval()
    video = torch.randn(1, 3, frames, size, size)
    run = (lambda x: model(x)) if name == "vit_tiny" else (lambda x: model(x, keep_temporal=True))
    with torch.no_grad():
        if name == "vit_tiny":
            model(video[:, :, :1])
        else:
            model(video[:, :, :1], use_image=True)
        gc.collect()
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = _proc_status_kb("VmRSS")
        start = time.perf_counter()
        run(video)
        first = time.perf_counter() - start
        peak_mb = (_proc_status_kb("VmHWM") - before) / 1024
        runs, start, cpu_start = 0, time.perf_counter(), time.process_time()
        while runs == 0 or time.perf_counter() - start < min_seconds:
            run(video)
            runs += 1
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    result = {"model": name, "frames": frames, "chunk": None if name == "vit_tiny" else chunk, "clips_per_s": runs / elapsed,
              "s_per_clip": elapsed / runs, "cpu_s_per_clip": cpu / runs, "first_s": first, "peak_mb": peak_mb, "runs": runs,
              "threads": torch.get_num_threads()}
    if name != "vit_tiny":
        from encoders.ops.selective_scan import last_backend

        result["scan_backend"] = last_backend()
    return result


def spawn(name: str, frames: int, chunk: int | None, min_seconds: float, size: int, threads: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", name, "--frames", str(frames), "--min-seconds", str(min_seconds),
           "--size", str(size), "--threads", str(threads)]
    if chunk:
        cmd += ["--scan-chunk", str(chunk)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"{name} at {frames} frames failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--scan-chunk", type=int, default=0,
                        help="VideoMamba chunked-inference size in tokens (0 = whole sequence)")
    parser.add_argument("--compare-unchunked", action="store_true", help="also run VideoMamba without chunking")
    parser.add_argument("--min-seconds", type=float, default=3.0)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads per run (0 = torch's default); 1 avoids OpenMP barrier stalls on a busy machine")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(args.worker, args.frames[0], args.scan_chunk or None, args.min_seconds, args.size,
                                 args.threads)))
        return
    chunk = args.scan_chunk or None
    print(f"# batch 1, fp32, no_grad, {args.size}x{args.size}; VideoMamba scan_chunk_size={chunk}")
    header = "| frames | ViT-Ti clips/s | VM-Ti clips/s | speed VM/ViT | ViT-Ti peak MB | VM-Ti peak MB | memory ViT/VM |"
    if args.compare_unchunked:
        header += " VM-Ti unchunked clips/s | VM-Ti unchunked peak MB |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for frames in args.frames:
        vit = spawn("vit_tiny", frames, None, args.min_seconds, args.size, args.threads)
        vm = spawn("videomamba_tiny", frames, chunk, args.min_seconds, args.size, args.threads)
        row = (f"| {frames} | {vit['clips_per_s']:.3f} | {vm['clips_per_s']:.3f} | "
               f"{vm['clips_per_s'] / vit['clips_per_s']:.2f}x | {vit['peak_mb']:.0f} | {vm['peak_mb']:.0f} | "
               f"{vit['peak_mb'] / max(vm['peak_mb'], 1e-3):.2f}x |")
        if args.compare_unchunked:
            whole = spawn("videomamba_tiny", frames, None, args.min_seconds, args.size, args.threads)
            row += f" {whole['clips_per_s']:.3f} | {whole['peak_mb']:.0f} |"
        print(row, flush=True)
        print(f"<!-- {json.dumps([vit, vm])} -->", flush=True)
    print(f"# threads {vit['threads']}, scan backend {vm.get('scan_backend')}")


if __name__ == "__main__":
    main()
