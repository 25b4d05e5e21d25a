"""Load test of POST /search on loopback: N concurrent clients for a fixed time against a 100k-segment library, every
query distinct, beside the in-process bound (the same encoder, search and batching in a tight loop, no HTTP), for
the tuned settings and the settings before them, side by side in one run.

    python benchmarks/bench_service_load.py [--vectors 100000 --clients 16 --seconds 15 --rounds 2]
    python benchmarks/bench_service_load.py --approx [--vectors 1000000]   # IVF-PQ and IVF-Flat, with recall@10

The library is synthetic: clustered unit vectors inserted straight into the store (4 segments per video), so only
the query path is measured (tokenize, text encoder, FAISS exact search, grouping by video, JSON). The model is a
VideoTextModel with the packaged MiniLM-L6 text encoder (the real text path) and a tiny random vision encoder,
unless --model-path is given. Queries are generated word combinations, each sent once per service start, so the
query vector cache never hits (its hit rate, read from /metrics, is printed to show it). Modes: "tuned" (the
service's defaults), "before" (padding to max_text_tokens, torch and FAISS threads and BLAS threshold as shipped,
no cache, 3 ms batch wait) and, with --modes, "one-thread" (tuned, but one thread each for the encoder and FAISS,
steadier on a machine shared with other jobs) and "two-workers" (two micro-batches at once, one thread each; the
bound then runs two loops at once too). Each round runs
every mode once, alternating, to spread out machine noise. The clients speak HTTP/1.1 over raw asyncio streams, so
that the load generator, which shares the cores, costs as little as it can.

--approx: one --vectors library (default 1M), served in turn behind exact search (flat, the reference), IVF-PQ (what
`auto` chose before) and IVF-Flat (what it chooses now), each with the IndexConfig defaults (nlist sqrt(n) unless
--nlist): the load test at --clients, then recall@10 of the service's grouped-by-video answers against the exact ones
(computed here in numpy), build seconds (read from SQLite, train, add, save), index file size and the service's
resident memory.
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's code, in this process and (cwd) in the service's

MODES = {"tuned": [], "before": ["--dynamic-padding", "false", "--encoder-threads", "0", "--search-threads", "0",
                                  "--query-cache-size", "0", "--batch-wait-ms", "3"],
         "one-thread": ["--encoder-threads", "1", "--search-threads", "1"],  # tuned, one thread each
         "two-workers": ["--batch-workers", "2", "--encoder-threads", "1", "--search-threads", "1"]}
_WORDS = (("a", "one", "the", "a small", "a big"),
          ("red", "green", "blue", "yellow", "purple", "orange", "white", "black", "pink", "grey"),
          ("circle", "square", "star", "triangle", "ball", "box", "car", "dog", "bird", "person"),
          ("moves left", "grows bigger", "rotates slowly", "turns orange", "jumps over a fence", "falls down",
           "spins", "runs to the right", "shrinks", "bounces twice"),
          ("", " in a park", " on a table", " at night", " under the rain", " near the sea", " in a small kitchen",
           " on the street", " behind a wall", " in the snow"))
QUERIES = [f"{d} {c} {s} {a}{p}" for d, c, s, a, p in itertools.product(*_WORDS)]  # 50,000 distinct queries


def build_model(directory: Path) -> Path:
    import torch

    from encoders.video_text import VideoTextConfig, build_video_text_model, save_pretrained

    torch.manual_seed(0)
    model, _ = build_video_text_model(VideoTextConfig(fusion_layers=1, mlm=False))
    save_pretrained(model, str(directory), only_changed=True)
    return directory


def clustered_chunks(dim: int, vectors: int, per_video: int = 4, seed: int = 0):
    """(first row, unit vectors) in chunks of 10,000: 256 Gaussian centres plus noise 0.3, the library's vectors
    (also generated alone by bench_index_sweep.py, so the in-process sweep sees the very vectors the service does)."""
    from index.records import normalize

    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((256, dim)).astype(np.float32)
    for start in range(0, vectors, 10_000):
        n = min(10_000, vectors - start) // per_video * per_video
        yield start, normalize(centers[rng.integers(0, 256, n)] + 0.3 * rng.standard_normal((n, dim)))


def fill_library(data_dir: Path, dim: int, vectors: int, per_video: int = 4, seed: int = 0,
                 keep: bool = False) -> tuple[np.ndarray, np.ndarray] | None:
    """Clustered unit vectors (neighbour structure like real embeddings), bulk-inserted, then checkpointed; with
    `keep`, (the vectors as stored, the video id of each row), for exact answers."""
    from index import FaissLibrary, IndexConfig, NewVideo

    store = FaissLibrary(data_dir / "index", dim, IndexConfig(kind="flat"))
    spans = [(2.0 * s, 2.0 * s + 4.0) for s in range(per_video)]
    kept, owners = [], []
    for start, x in clustered_chunks(dim, vectors, per_video, seed):
        n = len(x) // per_video
        ids = store.add_videos([NewVideo(f"synthetic/{start // per_video + i}.mp4", 2.0 * per_video + 2, spans,
                                         x[i * per_video:(i + 1) * per_video], {"shard": i % 8}) for i in range(n)])
        if keep:
            kept.append(x.astype(np.float32))
            owners.append(np.repeat(np.asarray(ids, np.int64), per_video))
    store.close()
    return (np.concatenate(kept), np.concatenate(owners)) if keep else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_service(data_dir: Path, model: Path, extra: list[str], queue: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    args = [sys.executable, "-m", "service", "--port", str(port), "--data-dir", str(data_dir), "--model-path",
            str(model), "--queue-size", str(queue), *extra]
    log = data_dir.parent / f"service-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"service exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("service did not start")


def stop_service(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(120)


class Connection:
    """One keep-alive HTTP/1.1 connection: a POST of a JSON body, the status and the body back."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, url: str) -> "Connection":
        host, port = url.removeprefix("http://").split(":")
        return cls(*await asyncio.open_connection(host, int(port)))

    async def post(self, path: str, body: dict) -> tuple[int, bytes]:
        data = json.dumps(body).encode()
        self.writer.write(f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                          f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


async def load(url: str, clients: int, seconds: float, k: int, queries: list[str]) -> dict:
    """`clients` connections, each sending its next distinct query as soon as the last one is answered."""
    latencies, errors = [], 0
    todo = iter(queries)

    async def client(index: int, stop_at: float) -> None:
        nonlocal errors
        while time.monotonic() < stop_at and (query := next(todo, None)) is not None:
            t0 = time.perf_counter()
            try:
                status, data = await conns[index].post("/search", {"query": query, "k": k})
                ok = status == 200 and len(json.loads(data)["results"]) == k
            except (OSError, asyncio.IncompleteReadError, ValueError):
                ok = False
                conns[index].close()  # the service may have closed it: the next query goes on a fresh one
                conns[index] = await Connection.open(url)
            if ok:
                latencies.append(time.perf_counter() - t0)
            errors += not ok

    conns = [await Connection.open(url) for _ in range(clients)]
    # warm-up, not measured, all at once: one after the other, the first connections would sit idle past the
    # service's keep-alive (5 s) behind slow searches (exact over 1M) and be closed before the load starts
    await asyncio.gather(*(conn.post("/search", {"query": f"warm up {i}", "k": k}) for i, conn in enumerate(conns)))
    started = time.monotonic()
    await asyncio.gather(*(client(i, started + seconds) for i in range(clients)))
    elapsed = time.monotonic() - started
    for conn in conns:
        conn.close()
    lat = np.array(latencies) * 1000
    return {"requests": len(lat), "rps": len(lat) / elapsed, "p50": float(np.percentile(lat, 50)) if len(lat) else 0,
            "p99": float(np.percentile(lat, 99)) if len(lat) else 0, "errors": errors}


def service_counts(url: str) -> dict[str, float]:
    """Query vector cache hits and misses, and the mean micro-batch, from /metrics."""
    text = httpx.get(url + "/metrics", timeout=10).text
    found = dict(re.findall(r'vmr_query_cache_total\{outcome="(\w+)"\} (\S+)', text))
    batches = dict(re.findall(r'vmr_batch_size_(sum|count) (\S+)', text))
    return {"hits": float(found.get("hit", 0)), "misses": float(found.get("miss", 0)),
            "batch": float(batches.get("sum", 0)) / max(1.0, float(batches.get("count", 0)))}


def in_process_bound(data_dir: Path, model: Path, extra: list[str], batch: int, seconds: float, k: int,
                     queries: list[str]) -> float:
    """Queries/s of the service's own batch call (`run_searches`: encoder, index search, grouping) in a tight loop
    over batches of `batch` distinct queries, with the mode's settings and threads, no HTTP; with --batch-workers N,
    N such loops at once on their own threads, as the service runs N batches."""
    import threading

    from service.config import config_from_args
    from service.queries import plan, run_searches
    from service.query_cache import QueryVectorCache
    from service.schemas import SearchRequest
    from service.state import apply_threads, open_library

    from encoders.video_text import load_embedder

    config = config_from_args(["--data-dir", str(data_dir), "--model-path", str(model), *extra], {})
    embedder = load_embedder(str(model))
    library = open_library(config, embedder.dim)
    cache = QueryVectorCache(config.query_cache_size)
    todo, taking = iter(queries), threading.Lock()

    def batches():
        with taking:
            texts = [next(todo) for _ in range(batch)]
        return [plan(config, library, SearchRequest(query=q, k=k)) for q in texts]

    def loop(start: threading.Barrier) -> tuple[int, float]:
        apply_threads(config)
        run_searches(embedder, library, config, cache, batches())  # warm-up
        start.wait()
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            done += len(run_searches(embedder, library, config, cache, batches()))
        return done, time.perf_counter() - started

    try:
        workers = config.batch_workers
        with ThreadPoolExecutor(workers) as pool:  # fresh threads, as the service's batches run off the event loop
            start = threading.Barrier(workers)
            results = [f.result() for f in [pool.submit(loop, start) for _ in range(workers)]]
        return sum(done for done, _ in results) / max(elapsed for _, elapsed in results)
    finally:
        library.close()


def recall_at_k(url: str, vectors: np.ndarray, owners: np.ndarray, queries: list[str], k: int) -> float:
    """Mean share of the exact top-k videos (by best segment, numpy over every vector) in the service's answers."""
    found = []
    with httpx.Client(base_url=url, timeout=120) as http:
        for text in queries:
            body = http.post("/search", json={"query": text, "k": k, "return_vectors": True}).json()
            q = np.asarray(body["query_vector"], np.float32)
            best: dict[int, float] = {}
            scores = vectors @ q
            for i in np.argsort(-scores)[:64 * k]:
                best.setdefault(int(owners[i]), float(scores[i]))
            exact = set(sorted(best, key=lambda v: -best[v])[:k])
            found.append(len(exact & {r["video_id"] for r in body["results"]}) / k)
    return float(np.mean(found))


def service_rss_mib(proc: subprocess.Popen) -> float:
    """Resident memory of the service process (index, model, segment table), from /proc."""
    status = Path(f"/proc/{proc.pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


APPROX_KINDS = ("flat", "ivfpq", "ivfflat")  # exact (the reference), what `auto` chose before, what it chooses now


def approx_run(args, tmp: Path, model: Path, dim: int) -> None:
    """One library, then for each kind: build its index (the service's own code, saved where the service loads it
    from), start the service on it, the load test, recall@10 against numpy over every vector."""
    from index import FaissLibrary, IndexConfig

    t0 = time.perf_counter()
    vectors, owners = fill_library(tmp / "data", dim, args.vectors, keep=True)
    config = IndexConfig(nlist=args.nlist)
    print(f"library: {args.vectors} vectors of dim {dim} stored in {time.perf_counter() - t0:.0f} s; IVF lists "
          f"{config.ivf_nlist(args.vectors)}; {args.clients} clients x {args.seconds:.0f} s, k={args.k}, recall over "
          f"{args.recall_queries} queries", flush=True)
    rows = []
    for kind in APPROX_KINDS:
        t0 = time.perf_counter()
        FaissLibrary(tmp / "data" / "index", dim, IndexConfig(kind=kind, nlist=args.nlist)).close()  # train, add, save
        built = time.perf_counter() - t0
        size = (tmp / "data" / "index" / "segments.faiss").stat().st_size / 2**20
        proc, url = start_service(tmp / "data", model, ["--index-kind", kind], max(256, 4 * args.clients))
        try:
            r = asyncio.run(load(url, args.clients, args.seconds, args.k, QUERIES))
            if r["errors"]:
                print(f"{kind}: {r['errors']} errors; the service's log ends:\n"
                      + (tmp / f"service-{url.rpartition(':')[2]}.log").read_text()[-3000:], flush=True)
            rss = service_rss_mib(proc)
            recall = recall_at_k(url, vectors, owners, QUERIES[::-1][:args.recall_queries], args.k)
        finally:
            stop_service(proc)
        rows.append((kind, config.ivf_nprobe(kind) if kind != "flat" else "-", r, recall, built, size, rss))
        print(f"{kind}: done ({built:.0f} s build)", flush=True)
    print(f"{'index':<9}{'nprobe':>7}{'requests':>9}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'errors':>7}"
          f"{'recall@10':>10}{'build s':>8}{'index MiB':>10}{'service RSS MiB':>16}")
    for kind, nprobe, r, recall, built, size, rss in rows:
        print(f"{kind:<9}{nprobe:>7}{r['requests']:>9}{r['rps']:>8.1f}{r['p50']:>8.1f}{r['p99']:>8.1f}{r['errors']:>7}"
              f"{recall:>10.3f}{built:>8.0f}{size:>10.0f}{rss:>16.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vectors", type=int, default=None, help="100,000 (1,000,000 with --approx)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--modes", default="tuned,before", help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--model-path", default=None)
    parser.add_argument("--approx", action="store_true", help="the approximate-index run instead (see above)")
    parser.add_argument("--nlist", type=int, default=0, help="IVF lists of the --approx indexes (0: IndexConfig's)")
    parser.add_argument("--recall-queries", type=int, default=200)
    args = parser.parse_args()
    args.vectors = args.vectors or (1_000_000 if args.approx else 100_000)
    modes = args.modes.split(",")
    if not (1 <= args.clients <= 256 and 0 < args.seconds <= 120 and 1 <= args.rounds <= 5
            and 1 <= args.vectors <= 2_000_000 and set(modes) <= set(MODES)):
        raise SystemExit(f"bounds: clients 1-256, seconds <= 120, rounds 1-5, vectors <= 2e6, modes of {list(MODES)}")

    with tempfile.TemporaryDirectory(prefix="bench-service-") as tmp:
        tmp = Path(tmp)
        model = Path(args.model_path) if args.model_path else build_model(tmp / "model")
        from encoders.video_text import load_embedder

        dim = load_embedder(str(model)).dim
        if args.approx:
            return approx_run(args, tmp, model, dim)
        t0 = time.perf_counter()
        fill_library(tmp / "data", dim, args.vectors)
        print(f"library: {args.vectors} vectors of dim {dim} in {time.perf_counter() - t0:.1f} s; "
              f"{args.clients} clients x {args.seconds:.0f} s per run, {args.rounds} rounds, k={args.k}; "
              f"bound: batches of {min(32, args.clients)}")
        results: dict[str, list[dict]] = {m: [] for m in modes}
        sent = 0
        for _ in range(args.rounds):
            for mode in modes:
                queries = QUERIES[sent:] + QUERIES[:sent]  # a fresh service: its cache is empty
                proc, url = start_service(tmp / "data", model, MODES[mode], max(256, 4 * args.clients))
                try:
                    r = asyncio.run(load(url, args.clients, args.seconds, args.k, queries))
                    r.update(service_counts(url))
                finally:
                    stop_service(proc)
                sent = (sent + r["requests"] + r["errors"] + args.clients) % len(QUERIES)
                r["bound"] = in_process_bound(tmp / "data", model, MODES[mode], min(32, args.clients),
                                              min(args.seconds, 10), args.k, queries[::-1])
                results[mode].append(r)
        print(f"{'mode':<10}{'requests':>9}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'errors':>7}{'batch':>7}"
              f"{'cache hits':>11}{'bound q/s':>10}{'service/bound':>14}")
        for mode, runs in results.items():
            for r in runs:
                print(f"{mode:<10}{r['requests']:>9}{r['rps']:>8.1f}{r['p50']:>8.1f}{r['p99']:>8.1f}{r['errors']:>7}"
                      f"{r['batch']:>7.1f}{r['hits'] / max(1, r['hits'] + r['misses']):>11.1%}{r['bound']:>10.1f}"
                      f"{r['rps'] / r['bound']:>14.2f}")
        if "tuned" in results and "before" in results:
            ratio = np.mean([r["rps"] for r in results["tuned"]]) / np.mean([r["rps"] for r in results["before"]])
            print(f"throughput ratio (tuned / before): {ratio:.2f}x")


if __name__ == "__main__":
    main()
