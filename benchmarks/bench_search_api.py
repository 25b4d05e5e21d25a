"""What the search API's features cost: a grouped, filtered, paged query against the flat query the service
answered before (the best segment of each of the top-k videos, no moments, no filter, first page), side by side
on one library, in one process.

    .venv/bin/python benchmarks/bench_search_api.py [--segments 100000 --dim 512 --queries 200 --rounds 3]

The library is clustered unit vectors in 4 windows per video with user fields; the queries are distinct
vectors near the clusters (the text encoder's cost is the same for both and is left out: this measures the index
side, where the features live). The filter keeps half the library (`{"shard": [0, 1, 2, 3]}`) or 1% of it
(`{"rare": true}`); the page is the second (offset 10, k 10) with 3 moments per video.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from index import FaissLibrary, IndexConfig, NewVideo, parse_filter
from index.records import normalize
from index.search import Query, search


def build(root: Path, segments: int, dim: int, seed: int = 0) -> tuple[FaissLibrary, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = normalize(rng.standard_normal((512, dim)))
    per_video = 4
    spans = [(4.0 * s, 4.0 * s + 8.0) for s in range(per_video)]
    library = FaissLibrary(root, dim, IndexConfig(kind="flat"))
    for start in range(0, segments // per_video, 5000):
        n = min(5000, segments // per_video - start)
        x = normalize(centers[rng.integers(0, 512, n * per_video)] + 0.3 * rng.standard_normal((n * per_video, dim)))
        library.add_videos([NewVideo(f"/library/{start + i}.mp4", 20.0, spans, x[i * per_video:(i + 1) * per_video],
                                     {"shard": (start + i) % 8, "rare": (start + i) % 100 == 0})
                            for i in range(n)])
    queries = normalize(centers[rng.integers(0, 512, 10_000)] + 0.3 * rng.standard_normal((10_000, dim)))
    return library, queries


def timed(fn, queries: np.ndarray) -> list[float]:
    out = []
    for q in queries:
        started = time.perf_counter()
        fn(q)
        out.append((time.perf_counter() - started) * 1000)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--segments", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        library, pool = build(Path(tmp), args.segments, args.dim)
        built = time.perf_counter() - started
        half, rare = parse_filter({"shard": [0, 1, 2, 3]}), parse_filter({"rare": True})
        variants = {
            "flat (before: best segment per video, page 1)": lambda q: library.search_videos(q[None], 10),
            "grouped + 3 moments, page 2": lambda q: search(library, [Query(q, k=10, offset=10)]),
            "grouped + moments + filter 50%, page 2": lambda q: search(library, [Query(q, k=10, offset=10,
                                                                                      flt=half)]),
            "grouped + moments + filter 1%, page 2": lambda q: search(library, [Query(q, k=10, offset=10,
                                                                                     flt=rare)]),
        }
        for fn in variants.values():  # warm: filter caches, FAISS and SQLite pages
            fn(pool[0])
        times = {name: [] for name in variants}
        for r in range(args.rounds):  # interleaved, so machine noise hits every variant alike
            queries = pool[1 + r * args.queries: 1 + (r + 1) * args.queries]
            for name, fn in variants.items():
                times[name] += timed(fn, queries)
        base = statistics.median(times[next(iter(variants))])
        report = {"segments": library.num_segments(), "videos": library.num_videos(), "dim": args.dim,
                  "build_seconds": round(built, 1), "queries_per_variant": args.queries * args.rounds}
        for name, ms in times.items():
            report[name] = {"median_ms": round(statistics.median(ms), 2),
                            "p95_ms": round(float(np.percentile(ms, 95)), 2),
                            "ratio_to_flat": round(statistics.median(ms) / base, 2)}
        library.close()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
