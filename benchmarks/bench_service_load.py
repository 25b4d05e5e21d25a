"""Load test of POST /search on loopback: N concurrent clients for a fixed time against a 100k-vector index,
with and without micro-batching of the text encoder, side by side in one run.

    python benchmarks/bench_service_load.py [--vectors 100000 --clients 16 --seconds 15 --rounds 2]

The library is synthetic: clustered unit vectors inserted straight into the store (4 segments per video), so only
the query path is measured (tokenize, text encoder, FAISS exact search, grouping by video, JSON). The model is a
VideoTextModel with the packaged MiniLM-L6 text encoder (the real text path) and a tiny random vision encoder,
unless --model-path is given. Each round runs every mode once, alternating, to spread out machine noise.
"""
from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

QUERIES = [f"a {c} {s} {a}" for c in ("red", "green", "blue", "yellow") for s in ("circle", "square", "star")
           for a in ("moves left", "grows bigger", "rotates", "turns orange")]


def build_model(directory: Path) -> Path:
    import torch

    from encoders.video_text import VideoTextConfig, build_video_text_model, save_pretrained

    torch.manual_seed(0)
    model, _ = build_video_text_model(VideoTextConfig(fusion_layers=1, mlm=False))
    save_pretrained(model, str(directory), only_changed=True)
    return directory


def fill_library(data_dir: Path, dim: int, vectors: int, per_video: int = 4, seed: int = 0) -> None:
    """Clustered unit vectors (neighbour structure like real embeddings), bulk-inserted, then checkpointed."""
    from index import FaissLibrary, NewVideo

    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((256, dim)).astype(np.float32)
    store = FaissLibrary(data_dir / "index", dim)
    spans = [(2.0 * s, 2.0 * s + 4.0) for s in range(per_video)]
    for start in range(0, vectors, 10_000):
        n = min(10_000, vectors - start) // per_video
        x = centers[rng.integers(0, 256, n * per_video)] + 0.3 * rng.standard_normal((n * per_video, dim))
        store.add_videos([NewVideo(f"synthetic/{start // per_video + i}.mp4", 2.0 * per_video + 2, spans,
                                   x[i * per_video:(i + 1) * per_video], {"shard": i % 8}) for i in range(n)])
    store.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_service(data_dir: Path, model: Path, batching: bool, queue: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    args = [sys.executable, "-m", "service", "--port", str(port), "--data-dir", str(data_dir), "--model-path",
            str(model), "--micro-batching", str(batching).lower(), "--queue-size", str(queue)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"service exited with {proc.returncode}")
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("service did not start")


async def load(url: str, clients: int, seconds: float, k: int) -> dict:
    latencies, errors = [], 0
    stop_at = time.monotonic() + seconds

    async def client(i: int, http: httpx.AsyncClient) -> None:
        nonlocal errors
        n = i
        while time.monotonic() < stop_at:
            body = {"query": QUERIES[n % len(QUERIES)], "k": k}
            t0 = time.perf_counter()
            try:
                r = await http.post("/search", json=body)
                ok = r.status_code == 200 and len(r.json()["results"]) == k
            except httpx.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - t0) if ok else None
            errors += not ok
            n += clients

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        for _ in range(min(clients, 8)):  # warm-up, not measured
            await http.post("/search", json={"query": "warm up", "k": k})
        started = time.monotonic()
        await asyncio.gather(*(client(i, http) for i in range(clients)))
        elapsed = time.monotonic() - started
    lat = np.array(latencies) * 1000
    return {"requests": len(lat), "rps": len(lat) / elapsed, "p50": float(np.percentile(lat, 50)) if len(lat) else 0,
            "p99": float(np.percentile(lat, 99)) if len(lat) else 0, "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--model-path", default=None)
    args = parser.parse_args()
    if not (1 <= args.clients <= 256 and 0 < args.seconds <= 120 and 1 <= args.rounds <= 5
            and 1 <= args.vectors <= 1_000_000):
        raise SystemExit("bounds: clients 1-256, seconds <= 120, rounds 1-5, vectors <= 1e6")

    with tempfile.TemporaryDirectory(prefix="bench-service-") as tmp:
        tmp = Path(tmp)
        model = Path(args.model_path) if args.model_path else build_model(tmp / "model")
        from encoders.video_text import load_embedder

        dim = load_embedder(str(model)).dim
        t0 = time.perf_counter()
        fill_library(tmp / "data", dim, args.vectors)
        print(f"library: {args.vectors} vectors of dim {dim} in {time.perf_counter() - t0:.1f} s; "
              f"{args.clients} clients x {args.seconds:.0f} s per run, {args.rounds} rounds, k={args.k}")
        results = {True: [], False: []}
        for _ in range(args.rounds):
            for batching in (True, False):
                proc, url = start_service(tmp / "data", model, batching, queue=max(256, 4 * args.clients))
                try:
                    results[batching].append(asyncio.run(load(url, args.clients, args.seconds, args.k)))
                finally:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(60)
        print(f"{'mode':<22}{'requests':>10}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
        for batching, runs in results.items():
            for r in runs:
                name = "micro-batching" if batching else "one text per forward"
                print(f"{name:<22}{r['requests']:>10}{r['rps']:>10.1f}{r['p50']:>10.1f}{r['p99']:>10.1f}"
                      f"{r['errors']:>8}")
        on = np.mean([r["rps"] for r in results[True]])
        off = np.mean([r["rps"] for r in results[False]])
        print(f"throughput ratio (micro-batching / none): {on / off:.2f}x")


if __name__ == "__main__":
    main()
