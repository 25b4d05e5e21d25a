"""In-process sweep of approximate FAISS indexes on the load benchmark's 1M clustered vectors: each index is built
once, then recall@10 (videos, as the service groups them) against exact search and ms per batch of 16 queries at
several settings of its search knob. Picks the knob's default before the (slow) service run of
bench_service_load.py --approx.

    python benchmarks/bench_index_sweep.py [--vectors 1000000 --queries 200]

Queries are the text encoder's vectors for the load benchmark's queries (the same model it builds), so the
neighbour structure is the service's. Every index fetches 40 segments per query, as the library does for k=10.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from bench_service_load import QUERIES, build_model, clustered_chunks  # noqa: E402

PER_VIDEO, K, FETCH, BATCH = 4, 10, 40, 16


def top_videos(scores: np.ndarray, rows: np.ndarray, k: int) -> list[set[int]]:
    """The first k distinct videos (row // PER_VIDEO) of each query's ranked rows."""
    out = []
    for s, r in zip(scores, rows):
        seen: list[int] = []
        for i in r[np.argsort(-s, kind="stable")]:
            v = int(i) // PER_VIDEO
            if i >= 0 and v not in seen:
                seen.append(v)
            if len(seen) == k:
                break
        out.append(set(seen))
    return out


def measure(index, queries: np.ndarray, exact: list[set[int]], set_knob, values) -> None:
    for value in values:
        set_knob(value)
        index.search(queries[:BATCH], FETCH)  # warm-up
        found, times = [], []
        for start in range(0, len(queries), BATCH):
            t0 = time.perf_counter()
            scores, rows = index.search(queries[start:start + BATCH], FETCH)
            times.append(time.perf_counter() - t0)
            found += top_videos(scores, rows, K)
        recall = np.mean([len(a & b) / K for a, b in zip(found, exact)])
        print(f"  {value:>6}: recall@10 {recall:.3f}, {1000 * np.median(times):7.1f} ms per batch of {BATCH} "
              f"(max {1000 * max(times):.1f})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--nlist", type=int, default=1024)
    parser.add_argument("--kinds", default="flat,ivfflat,ivfpq-refine,ivfsq8", help="of those and hnsw (slow to build)")
    args = parser.parse_args()

    from encoders.video_text import load_embedder

    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        embedder = load_embedder(str(build_model(Path(tmp) / "model")))
        queries = embedder.embed_texts(QUERIES[::-1][:args.queries], dynamic_padding=True).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    dim = queries.shape[1]
    t0 = time.perf_counter()
    x = np.concatenate([chunk for _, chunk in clustered_chunks(dim, args.vectors, PER_VIDEO)])
    exact_scores = np.concatenate([queries @ x[s:s + 100_000].T for s in range(0, len(x), 100_000)], axis=1)
    rows = np.argpartition(-exact_scores, 64 * K, axis=1)[:, :64 * K]
    exact = top_videos(np.take_along_axis(exact_scores, rows, 1), rows, K)
    del exact_scores
    print(f"{len(x)} x {dim} vectors and exact answers in {time.perf_counter() - t0:.0f} s; "
          f"{faiss.omp_get_max_threads()} FAISS threads", flush=True)

    for kind in args.kinds.split(","):
        t0 = time.perf_counter()
        quantizer = faiss.IndexFlatIP(dim)
        if kind == "flat":  # the exact reference: its latency is what an approximate index has to beat
            index = faiss.IndexFlatIP(dim)
        elif kind == "hnsw":  # IndexConfig's M and efConstruction
            index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = 40
        elif kind == "ivfflat":
            index = faiss.IndexIVFFlat(quantizer, dim, args.nlist, faiss.METRIC_INNER_PRODUCT)
        elif kind == "ivfsq8":
            index = faiss.IndexIVFScalarQuantizer(quantizer, dim, args.nlist, faiss.ScalarQuantizer.QT_8bit,
                                                  faiss.METRIC_INNER_PRODUCT)
        else:
            index = faiss.IndexIVFPQ(quantizer, dim, args.nlist, dim // 8, 8, faiss.METRIC_INNER_PRODUCT)
        if kind not in ("flat", "hnsw"):
            index.train(x)
        ivf = index
        if kind == "ivfpq-refine":
            index = faiss.IndexRefineFlat(ivf)
        index.add(x)
        built = time.perf_counter() - t0
        size = faiss.serialize_index(index).nbytes
        lists = f", nlist {args.nlist}" if kind.startswith("ivf") else ""
        print(f"{kind}{lists}: built in {built:.0f} s, {size / 2**20:.0f} MiB serialized", flush=True)
        if kind == "flat":
            print(" exact:")
            measure(index, queries, exact, lambda v: None, ("-",))
        elif kind == "hnsw":
            print(" efSearch:")
            measure(index, queries, exact, lambda v: setattr(index.hnsw, "efSearch", v), (40, 64, 128, 256))
        elif kind == "ivfpq-refine":
            ivf.nprobe = 32
            print(" k_factor (nprobe 32):")
            measure(index, queries, exact, lambda v: setattr(index, "k_factor", float(v)), (1, 4, 16))
            index.k_factor = 16
            print(" nprobe (k_factor 16):")
            measure(index, queries, exact, lambda v: setattr(ivf, "nprobe", v), (8, 16, 64))
        else:
            print(" nprobe:")
            measure(index, queries, exact, lambda v: setattr(index, "nprobe", v), (4, 8, 16, 32, 64))
        index = ivf = quantizer = None  # free before the next build


if __name__ == "__main__":
    main()
