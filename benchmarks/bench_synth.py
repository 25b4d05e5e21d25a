"""Times the synthetic corpus generator on the default corpus (a 2,000-clip webvid-style split, cc3m-style
stills and the five benchmark-style splits), written as two runs (short clips, long videos), plus the
speed-up of the 2-process pool over one process on the same 200 clips, measured in this run.

    .venv/bin/python benchmarks/bench_synth.py [--out /tmp/synth_bench] [--workers 2]
"""
from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
import time
from pathlib import Path

from retrieval.synth import SynthConfig, generate
from retrieval.synth.writer import plan_corpus

SHORT_CORPORA = ("webvid", "cc3m", "msrvtt", "msvd", "lsmdc")
LONG_CORPORA = ("didemo", "anet")


def _only(cfg: SynthConfig, keep: tuple[str, ...], out: Path) -> SynthConfig:
    counts = {f.name: 0 for f in dataclasses.fields(cfg)
              if f.type == "int" and f.name.split("_")[0] in SHORT_CORPORA + LONG_CORPORA
              and f.name.split("_")[0] not in keep and f.name != "msvd_captions"}
    return dataclasses.replace(cfg, out=str(out), **counts)


def _timed(cfg: SynthConfig) -> tuple[float, dict]:
    start = time.perf_counter()
    manifest = generate(cfg, progress=False)
    return time.perf_counter() - start, manifest


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="the tiny test corpus (a smoke run, no numbers)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="synth_bench_"))
    cfg = (SynthConfig.tiny(out, workers=args.workers) if args.quick
           else SynthConfig(out=str(out), workers=args.workers))

    start = time.perf_counter()
    plans = plan_corpus(cfg)
    plan_s = time.perf_counter() - start
    short_files = sum(len(v) for (c, _), v in plans.items() if c in SHORT_CORPORA)
    long_frames = sum(c.num_frames for (k, _), v in plans.items() if k in LONG_CORPORA for c in v)

    short_s, short_manifest = _timed(_only(cfg, SHORT_CORPORA, out / "short"))
    long_s, long_manifest = _timed(_only(cfg, LONG_CORPORA, out / "long"))
    files = sum(s["files"] for m in (short_manifest, long_manifest) for s in m["splits"].values())
    size_mb = sum(p.stat().st_size for d in ("short", "long") for p in (out / d).rglob("*") if p.is_file()) / 2**20

    sub = dataclasses.replace(_only(cfg, ("msrvtt",), out / "w1"), msrvtt_train=200, msrvtt_test=0)
    one_s, _ = _timed(dataclasses.replace(sub, workers=1))
    two_s, _ = _timed(dataclasses.replace(sub, out=str(out / "w2"), workers=2))

    print(f"config: size {cfg.size}, fps {cfg.fps}, {cfg.frames} frames per short clip, workers {cfg.workers}")
    print(f"planning all splits: {plan_s:.2f} s")
    print(f"short clips+stills: {short_files} files in {short_s:.1f} s ({short_files / short_s:.0f} files/s)")
    print(f"long videos: {long_frames} frames in {long_s:.1f} s ({long_frames / long_s:.0f} frames/s)")
    print(f"whole corpus: {files} files, {size_mb:.0f} MiB, {short_s + long_s:.1f} s")
    print(f"200 clips: 1 process {one_s:.2f} s, 2 processes {two_s:.2f} s, speed-up x{one_s / two_s:.2f}")
    if args.out is None:
        shutil.rmtree(out)


if __name__ == "__main__":
    main()
