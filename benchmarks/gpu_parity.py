"""GPU session check: a full VideoMamba-M forward on CUDA against the CPU backend, then CUDA throughput.

Parity (same weights, same 8-frame 224x224 clip, batch 1): CUDA fp32 (TF32 off) within 1e-4 relative of the
CPU fp32 result, CUDA bf16 autocast within 1e-2 relative (relative = max|cuda - cpu| / max|cpu|, on x_vis and
the pooled feature). Throughput: clips/s at 8 and 64 frames, fp32 and bf16 autocast, no_grad.
The CUDA scan is mamba-ssm's kernel when installed (pip install '.[gpu]'), else the portable torch scan; the
backend used is printed. Exit status 1 if a parity check fails.

    python benchmarks/gpu_parity.py [--model videomamba_middle] [--batch 1] [--iters 10]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from encoders import create_model  # noqa: E402
from encoders.ops.selective_scan import last_backend  # noqa: E402


def relative_error(got, ref) -> float:
    return ((got.float().cpu() - ref).abs().max() / ref.abs().max()).item()


def forward(model, video, bf16: bool):
    with torch.no_grad(), torch.autocast(video.device.type, dtype=torch.bfloat16, enabled=bf16):
        x_vis, pooled, _ = model(video, keep_temporal=True)
    return x_vis, pooled


def parity(name: str) -> bool:
    torch.manual_seed(0)
    model = create_model(name).eval()
    video = torch.randn(1, 3, 8, 224, 224)
    os.environ["VIDEOMAMBA_SCAN_BACKEND"] = "auto"
    ref = forward(model, video, bf16=False)
    cpu_backend = last_backend()
    model.cuda()
    ok = True
    for bf16, tolerance in ((False, 1e-4), (True, 1e-2)):
        got = forward(model, video.cuda(), bf16)
        errors = [relative_error(g, r) for g, r in zip(got, ref)]
        passed = max(errors) <= tolerance
        ok &= passed
        print(f"{'bf16 autocast' if bf16 else 'fp32'}: CUDA ({last_backend()}) vs CPU ({cpu_backend}) relative error "
              f"x_vis {errors[0]:.2e}, pooled {errors[1]:.2e} (tolerance {tolerance:g}) "
              f"{'PASS' if passed else 'FAIL'}")
    return ok


def throughput(name: str, frames: int, batch: int, iters: int, bf16: bool) -> float:
    model = create_model(name, num_frames=frames).cuda().eval()
    video = torch.randn(batch, 3, frames, 224, 224, device="cuda")
    for _ in range(3):
        forward(model, video, bf16)
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        forward(model, video, bf16)
    torch.cuda.synchronize()
    return batch * iters / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="videomamba_middle")
    parser.add_argument("--frames", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--iters", type=int, default=10)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("gpu_parity.py needs a CUDA device")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    print(f"# {torch.cuda.get_device_name()}, torch {torch.__version__}, model {args.model}")
    ok = parity(args.model)
    print("| frames | fp32 clips/s | bf16 clips/s |")
    print("|---|---|---|")
    for frames in args.frames:
        fp32 = throughput(args.model, frames, args.batch, args.iters, bf16=False)
        bf16 = throughput(args.model, frames, args.batch, args.iters, bf16=True)
        print(f"| {frames} | {fp32:.2f} | {bf16:.2f} |", flush=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
