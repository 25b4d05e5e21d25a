"""FAISS against Milvus on one library, side by side in one run: load time, single-query latency, batched
throughput and recall@10 of grouped-by-video search against the exact answer; and Ray bulk ingestion in videos/s
at 1 and 2 workers.

    python benchmarks/bench_scale.py [--segments 100000] [--quick] [--milvus23] [--skip-ray]

--quick: 20,000 segments, 20 queries, 8 clips. --milvus23 also runs the Milvus 2.3 binary, which listens on every
interface: only inside a loopback-only network namespace, e.g.
    unshare --net bash -c 'ip link set lo up && python benchmarks/bench_scale.py --milvus23'
Data: clustered 512-d unit vectors (4 segments per video), the shape of real embeddings. Milvus indexes are HNSW;
FAISS is exact (flat) and HNSW.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def library_data(segments: int, dim: int, per_video: int = 4, seed: int = 0):
    from index import NewVideo
    from index.records import normalize

    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((256, dim)).astype(np.float32)
    x = normalize(centers[rng.integers(0, 256, segments)] + 0.3 * rng.standard_normal((segments, dim)))
    spans = [(2.0 * s, 2.0 * s + 4.0) for s in range(per_video)]
    videos = [NewVideo(f"/media/{v}.mp4", 2.0 * per_video + 2, spans, x[v * per_video:(v + 1) * per_video],
                       {"shard": v % 8}) for v in range(segments // per_video)]
    queries = normalize(centers[rng.integers(0, 256, 200)] + 0.3 * rng.standard_normal((200, dim)))
    return videos, queries


def measure(name: str, library, videos, queries, truth=None) -> dict:
    t0 = time.perf_counter()
    for i in range(0, len(videos), 1000):
        library.add_videos(videos[i:i + 1000])
    load = time.perf_counter() - t0
    library.search_videos(queries[:1], 10)  # warm (Milvus builds/loads its index)
    t0 = time.perf_counter()
    singles = [library.search_videos(q[None], 10)[0] for q in queries]
    latency = (time.perf_counter() - t0) / len(queries) * 1000
    t0 = time.perf_counter()
    for i in range(0, len(queries), 32):
        library.search_videos(queries[i:i + 32], 10)
    qps = len(queries) / (time.perf_counter() - t0)
    ranked = [[h.video.path for h in hits] for hits in singles]
    recall = 1.0 if truth is None else float(np.mean([len(set(r) & set(t)) / 10 for r, t in zip(ranked, truth)]))
    print(f"{name:<28}{load:>10.1f}{latency:>12.1f}{qps:>10.1f}{recall:>11.3f}", flush=True)
    return {"ranked": ranked}


def bench_index(segments: int, n_queries: int, milvus23: bool) -> None:
    from index import FaissLibrary, IndexConfig
    from index.milvus_library import MilvusLibrary
    from milvus_servers import MilvusLite, MilvusStandalone

    dim = 512
    videos, queries = library_data(segments, dim)
    queries = queries[:n_queries]
    print(f"{segments} segments ({len(videos)} videos) x {dim}-d, {len(queries)} queries, k=10 grouped by video")
    print(f"{'backend':<28}{'load s':>10}{'1 query ms':>12}{'q/s (32)':>10}{'recall@10':>11}")
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        tmp = Path(tmp)
        exact = FaissLibrary(tmp / "flat", dim, IndexConfig(kind="flat"))
        truth = measure("faiss flat (exact)", exact, videos, queries)["ranked"]
        exact.close()
        hnsw = FaissLibrary(tmp / "hnsw", dim, IndexConfig(kind="hnsw"))
        measure("faiss hnsw", hnsw, videos, queries, truth)
        hnsw.close()
        servers = [("milvus-lite 3.2 hnsw", MilvusLite(tmp / "lite"))]
        if milvus23:
            servers.append(("milvus 2.3 hnsw", MilvusStandalone(tmp / "m23")))
        for name, server in servers:
            server.start()
            try:
                token = "root:Milvus" if isinstance(server, MilvusStandalone) else None
                library = MilvusLibrary(server.uri, dim, "bench", token=token, index_kind="hnsw", timeout=3600)
                measure(name, library, videos, queries, truth)
                library.close()
            finally:
                server.kill()


def bench_ray(clips: int) -> None:
    from service.bulk_ingest import bulk_ingest, start_ray
    from service.config import ServiceConfig
    from test_service_helpers import save_tiny_model, write_clip

    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        tmp = Path(tmp)
        model = save_tiny_model(tmp / "model")
        (tmp / "videos").mkdir()
        for i in range(clips):
            write_clip(tmp / "videos" / f"{i}.mp4", seconds=8.0, seed=i)
        ray = start_ray(None, 2)
        config = ServiceConfig(model_path=str(model), segment_window=2.0, segment_stride=1.0)
        print(f"Ray bulk ingestion: {clips} clips of 8 s (tiny model, 2 s windows every 1 s)")
        for workers in (1, 2):
            t0 = time.perf_counter()
            written, _ = bulk_ingest([str(tmp / "videos")], tmp / f"shards{workers}", config, workers=workers)
            seconds = time.perf_counter() - t0
            print(f"  {workers} worker(s): {written} videos in {seconds:.1f} s = {written / seconds:.2f} videos/s",
                  flush=True)
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--segments", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--milvus23", action="store_true")
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.segments, args.queries, args.clips = 20_000, 20, 8
    if not 1000 <= args.segments <= 2_000_000:
        raise SystemExit("--segments between 1,000 and 2,000,000")
    bench_index(args.segments, args.queries, args.milvus23)
    if not args.skip_ray:
        bench_ray(args.clips)


if __name__ == "__main__":
    main()
