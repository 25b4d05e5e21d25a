"""`python -m service bulk-ingest SOURCE... --out SHARDS [--ray-address ADDR] [--workers N] [--import]
[service flags]`: embed many videos in parallel with Ray Data and write the import format (`encoders.vector_table`)
as Parquet shards, then (with --import) store them in the configured library (`service.bulk_import`).

SOURCE: a folder (searched recursively for videos), a text file listing one video path per line, a glob pattern, or
a video. Each Ray actor holds the model (`Embedder.embed_videos`, the service's own ingestion path, so the vectors are
the service's) on a CPU, or a GPU with --worker-gpus. Shards are written whole (temporary name, then rename) every
--shard-videos videos; a second run skips every video a shard already holds, so a stopped run is resumed by running
it again. Without --ray-address a local Ray starts on this machine, bound to loopback.
"""
from __future__ import annotations

import argparse
import glob
import logging
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from encoders.extract import VIDEO_EXTENSIONS
from encoders.vector_table import parquet_files, video_table, write_tables
from encoders.video_text import load_embedder
from service.config import ServiceConfig, config_from_args
from service.state import resolve_model_path

log = logging.getLogger(__name__)

VIDEOS_PER_CALL = 4  # videos an actor embeds in one call: one decoding pass each, their windows in shared batches


def list_videos(sources: list[str]) -> list[str]:
    """Absolute paths of the videos the sources name, each once, in order."""
    found: list[str] = []
    for source in sources:
        path = Path(source)
        if any(ch in source for ch in "*?["):
            found += sorted(glob.glob(source, recursive=True))
        elif path.is_dir():
            found += sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())
        elif path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS:
            found.append(source)
        elif path.is_file():
            found += [line.strip() for line in path.read_text().splitlines() if line.strip()]
        else:
            raise FileNotFoundError(f"{source}: no such folder, file list, video or matching glob")
    return list(dict.fromkeys(str(Path(p).resolve()) for p in found))


def done_videos(out: Path) -> set[str]:
    """Paths the shards under `out` already hold."""
    import pyarrow.parquet as pq

    if not out.exists():
        return set()
    return {p for f in parquet_files(out) for p in pq.read_table(f, columns=["path"]).column("path").to_pylist()}


class EmbedVideos:
    """A Ray actor: the model, loaded once; each call embeds a batch of video paths into rows of windows
    (`Embedder.embed_videos`: each file decoded once while the previous windows are encoded)."""

    def __init__(self, model_path: str, window: float, stride: float, num_frames: int, frame_size: int,
                 device: str):
        from encoders.video_text import load_embedder

        self.embedder = load_embedder(model_path, num_frames=num_frames, frame_size=frame_size, device=device)
        self.window, self.stride = window, stride

    def __call__(self, batch):
        import pyarrow as pa

        out = {"path": [], "error": [], "duration": [], "starts": [], "ends": [], "vectors": []}
        for path, emb in self.embedder.embed_videos(batch.column("path").to_pylist(), self.window, self.stride):
            if isinstance(emb, Exception):
                row = (str(emb) or type(emb).__name__, 0.0, [], [], [])
            else:
                row = ("", emb.duration, [s for s, _ in emb.spans], [e for _, e in emb.spans],
                       emb.vectors.reshape(-1).tolist())
            out["path"].append(path)
            for key, value in zip(("error", "duration", "starts", "ends", "vectors"), row):
                out[key].append(value)
        return pa.table({**out, "vectors": pa.array(out["vectors"], pa.list_(pa.float32()))})


def start_ray(address: str | None, num_cpus: int | None):
    """Connect to a cluster, or start a local Ray bound to loopback with usage statistics off."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    if not ray.is_initialized():
        ray.init(address=address, num_cpus=None if address else num_cpus, include_dashboard=False,
                 log_to_driver=False)
    return ray


def bulk_ingest(sources: list[str], out: Path, config: ServiceConfig, workers: int = 2, worker_gpus: float = 0.0,
                shard_videos: int = 16, ray_address: str | None = None) -> tuple[int, list[tuple[str, str]]]:
    """Embed the videos no shard holds yet into new shards under `out`; (videos written, [(path, error)])."""
    videos = list_videos(sources)
    done = done_videos(out)
    todo = [p for p in videos if p not in done]
    log.info("%d videos, %d already in shards, %d to embed", len(videos), len(videos) - len(todo), len(todo))
    if not todo:
        return 0, []
    ray = start_ray(ray_address, workers)
    model_path = resolve_model_path(config)
    device = "cuda" if worker_gpus > 0 else "cpu"
    per_call = max(1, min(VIDEOS_PER_CALL, len(todo) // workers))  # every actor busy, and windows shared in batches
    dataset = ray.data.from_items([{"path": p} for p in todo],
                                  override_num_blocks=math.ceil(len(todo) / per_call)).map_batches(
        EmbedVideos, fn_constructor_args=(model_path, config.segment_window, config.segment_stride,
                                          config.num_frames, config.frame_size, device),
        batch_size=per_call, batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=1,
        num_gpus=worker_gpus)
    fingerprint = load_embedder(model_path, num_frames=config.num_frames, frame_size=config.frame_size,
                                max_text_tokens=config.max_text_tokens).fingerprint  # what the actors embed with
    stamp = time.strftime("%Y%m%d-%H%M%S")
    tables, failed, written, shard = [], [], 0, 0

    def flush() -> None:
        nonlocal tables, shard
        if tables:
            write_tables(out / f"shard-{stamp}-{os.getpid()}-{shard:05d}.parquet", tables, fingerprint)
            tables, shard = [], shard + 1

    for batch in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
        for row in batch.to_pylist():
            if row["error"]:
                failed.append((row["path"], row["error"]))
                continue
            vectors = np.asarray(row["vectors"], np.float32).reshape(len(row["starts"]), -1)
            tables.append(video_table(row["path"], list(zip(row["starts"], row["ends"])), vectors, row["duration"],
                                      Path(row["path"]).stem))
            written += 1
            if len(tables) >= shard_videos:
                flush()
    flush()
    return written, failed


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m service bulk-ingest", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", nargs="+", help="folders, file lists, glob patterns or videos")
    parser.add_argument("--out", type=Path, required=True, help="the folder of Parquet shards")
    parser.add_argument("--ray-address", default=None, help="a Ray cluster (default: a local Ray on loopback)")
    parser.add_argument("--workers", type=int, default=2, help="actors, each holding the model")
    parser.add_argument("--worker-gpus", type=float, default=0.0, help="GPUs per actor (0: CPU)")
    parser.add_argument("--shard-videos", type=int, default=16, help="videos per shard file")
    parser.add_argument("--import", dest="do_import", action="store_true",
                        help="then store the shards in the library the service flags name (--data-dir, or "
                             "--index-backend milvus ...)")
    args, rest = parser.parse_known_args(argv)
    try:
        config = config_from_args(rest)
        written, failed = bulk_ingest(args.sources, args.out, config, args.workers, args.worker_gpus,
                                      args.shard_videos, args.ray_address)
        print(f"embedded {written} video(s) into {args.out}")
        for path, error in failed:
            print(f"  skipped {path}: {error}", file=sys.stderr)
        if args.do_import:
            from service.bulk_import import run

            stored, skipped = run(args.out, config)
            print(f"imported {stored} video(s); {skipped} already in the library")
    except (ValueError, FileNotFoundError) as err:
        print(f"python -m service bulk-ingest: {err}", file=sys.stderr)
        return 2
    return 0
