"""Service settings: one dataclass, filled from flags, then `VMR_*` environment variables, then defaults."""
from __future__ import annotations

import argparse
import ipaddress
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

from index import IndexConfig
from index.faiss_index import KINDS
from index.filters import parse_declared

ENV_PREFIX = "VMR_"
API_KEY = re.compile(r"[!-~]{8,}")  # what an HTTP header carries unchanged: no spaces, nothing to strip or decode


def default_threads() -> int:
    """OMP_NUM_THREADS when it is set (what torch and FAISS would take by themselves), else one per core."""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        return os.cpu_count() or 1


@dataclass
class ServiceConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("data/service")
    media_root: Path | None = None  # default: <data_dir>/media; POST /videos paths must lie inside it
    model_path: str | None = None  # a VideoTextModel directory (save_pretrained); None: the embedded default
    api_key: str | None = None  # protects every write endpoint; None: writes open (only allowed on loopback)
    protect_reads: bool = False  # also require the key for reads
    embedded_default: bool = False  # generate and index the synthetic demo library when the data dir is empty
    library: Path | None = None  # a folder of videos indexed at start and watched for new files
    library_poll_s: float = 5.0  # seconds between looks at the library folder
    # bounds on requests, checked before the work they would cost (docs/security.md)
    max_upload_mb: float = 200.0  # a multipart body (an upload)
    max_json_mb: float = 4.0  # any other body
    max_k: int = 100
    max_query_chars: int = 512
    max_moments_per_video: int = 10
    max_page_depth: int = 1000  # the deepest result a page token may start at
    max_video_seconds: float = 3 * 3600.0
    max_frame_pixels: int = 4096 * 2160  # width x height of a video's frames or an image, read before decoding
    max_video_frames: int = 1_000_000
    max_texts_per_request: int = 1000
    max_concurrent_uploads: int = 2  # requests carrying a file, per route, at once; more answer 503
    max_concurrent_requests: int = 256  # other requests, per route, at once; more answer 503
    header_timeout_s: float = 10.0  # a connection that has not sent a whole request head by then is closed
    body_timeout_s: float = 30.0  # a body must arrive within this, plus a second for every 16 KiB received
    # how videos are cut and embedded
    segment_window: float = 8.0
    segment_stride: float = 4.0
    num_frames: int = 0  # 0: what the model was built for
    frame_size: int = 0  # 0: what the model was built for
    max_text_tokens: int = 0  # 0: the model's max_txt_len
    rerank_candidates: int = 16  # how many of the top results rerank re-orders
    rerank_weight: float = 0.03  # rerank score = cosine + weight * matching-head logit (benchmarks/bench_rerank.py)
    rerank_tokens: str = "auto"  # keep vision tokens per window for rerank: auto (small models), on, off
    thumbnail_size: int = 256  # longer side of the thumbnails made at ingestion, pixels
    # the query path: text micro-batching through the encoder and the index, threads, the vector cache
    micro_batching: bool = True
    batch_size: int = 32
    batch_wait_ms: float = 15.0
    batch_workers: int = 1  # micro-batches that run at once (each on a worker thread)
    queue_size: int = 256
    dynamic_padding: bool = True  # pad a batch's query texts to its longest, not to max_text_tokens: same vectors
    encoder_threads: int = default_threads()  # torch intra-op threads; 0: one per core
    search_threads: int = default_threads()  # OpenMP threads of a FAISS search; 0: FAISS as shipped
    query_cache_size: int = 10_000  # query vectors kept (LRU); 0: none
    job_queue_size: int = 1000
    checkpoint_interval_s: float = 10.0
    # where the library lives: "faiss" (embedded, under <data_dir>/index) or "milvus" (a server that several
    # replicas can share; pip install -e ".[scale]")
    index_backend: str = "faiss"
    milvus_uri: str = "http://127.0.0.1:19530"
    milvus_token: str | None = None  # "user:password" when the server has authentication on
    milvus_collection: str = "vmr"  # prefix of the library's collections (<name>_segments, _videos, _texts, _meta)
    milvus_fields: str | None = None  # "camera:text,year:number": user fields as typed columns (index.filters)
    index: IndexConfig = field(default_factory=IndexConfig)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        self.media_root = Path(self.media_root) if self.media_root else self.data_dir / "media"
        if self.rerank_tokens not in ("auto", "on", "off"):
            raise ValueError(f"rerank_tokens must be auto, on or off, got {self.rerank_tokens!r}")
        if self.segment_stride > self.segment_window:
            raise ValueError(f"segment_stride ({self.segment_stride}) must not exceed segment_window "
                             f"({self.segment_window})")
        if self.index_backend not in ("faiss", "milvus"):
            raise ValueError(f"index_backend must be faiss or milvus, got {self.index_backend!r}")
        parse_declared(self.milvus_fields)
        if self.library is not None:
            self.library = Path(self.library)
            if not self.library.is_dir():
                raise ValueError(f"--library {self.library}: no such folder")
        if self.batch_workers < 1:
            raise ValueError(f"batch_workers must be >= 1, got {self.batch_workers}")
        for name in ("encoder_threads", "search_threads", "query_cache_size"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.library_poll_s <= 0:
            raise ValueError(f"library_poll_s must be > 0, got {self.library_poll_s}")
        if self.api_key is not None and not API_KEY.fullmatch(self.api_key):
            raise ValueError("the API key must be at least 8 printable ASCII characters without spaces (for "
                             "instance: openssl rand -hex 32)")
        if self.api_key is None and not _is_loopback(self.host):
            raise ValueError(f"serving on {self.host} (not loopback) needs an API key: pass --api-key or set "
                             f"{ENV_PREFIX}API_KEY")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_json_bytes(self) -> int:
        return int(self.max_json_mb * 1024 * 1024)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (true/false), got {text!r}")


# Every flag's description and, where the dataclass default is not what happens, the real default in words.
FIELD_HELP: dict[str, tuple[str, str | None]] = {
    "host": ("address to listen on; beyond loopback an --api-key is required", None),
    "port": ("TCP port", None),
    "data_dir": ("the library's index (index/), job records, uploads, thumbnails, window tokens, the demo library and, "
                 "by default, the media root", None),
    "media_root": ("POST /videos paths must lie inside it (the service's own files never are)", "<data_dir>/media"),
    "model_path": ("a VideoTextModel folder (save_pretrained, or a training run's <output>/model) or an official "
                   ".pth", "the committed demo model ($VMR_DEMO_MODEL, else encoders/pretrained/videomamba_demo)"),
    "api_key": ("protects every write endpoint (X-API-Key or Authorization: Bearer); at least 8 printable ASCII "
                "characters without spaces", "none: writes are open, allowed only on loopback"),
    "protect_reads": ("also require the API key for reads, /healthz and /metrics (GET /livez and GET /auth stay open)",
                      None),
    "embedded_default": ("generate and index the synthetic demo library when the library is empty",
                         "true when neither --model-path nor --library is given, else false"),
    "library": ("a folder of videos (searched recursively) indexed at start and watched for new files; files already "
                "in the library are skipped (a restart re-indexes nothing), undecodable ones are logged once and "
                "retried only when they change; deleting a file does not delete its video; may lie outside the media "
                "root; progress in /healthz under \"library\"", "none"),
    "library_poll_s": ("seconds between looks at the --library folder for new or changed files", None),
    "max_upload_mb": ("largest multipart body (an upload), in MB, on any transfer encoding", None),
    "max_json_mb": ("largest other body (JSON), in MB", None),
    "max_k": ("most results a search may ask for", None),
    "max_query_chars": ("longest text query, in characters", None),
    "max_moments_per_video": ("most moments a search may ask for per video", None),
    "max_page_depth": ("the deepest result a page token may start at (deeper: narrow the search)", None),
    "max_video_seconds": ("longest video accepted, in seconds", None),
    "max_frame_pixels": ("largest frame (width x height) of a video or image, read from its header before decoding",
                         None),
    "max_video_frames": ("most frames a video may have", None),
    "max_texts_per_request": ("most captions in one POST /texts", None),
    "max_concurrent_uploads": ("requests carrying a file being served at once per route; more answer 503", None),
    "max_concurrent_requests": ("other requests being served at once per route; more answer 503", None),
    "header_timeout_s": ("seconds a connection may take to send a whole request head before it is closed", None),
    "body_timeout_s": ("seconds a body may take to arrive, plus one per 16 KiB received; slower answers 408", None),
    "segment_window": ("seconds of video per indexed segment (long videos are indexed as overlapping segments)", None),
    "segment_stride": ("seconds between the starts of consecutive segments (at most the window)", None),
    "num_frames": ("frames sampled per segment", "0: what the model was built for"),
    "frame_size": ("frame side in pixels", "0: what the model was built for"),
    "max_text_tokens": ("tokens of a text query", "0: the model's max_txt_len"),
    "rerank_candidates": ("how many of the top results a search with rerank re-orders with the matching head", None),
    "rerank_weight": ("rerank score = cosine + this x the matching head's logit (tuned by benchmarks/bench_rerank.py)",
                      None),
    "rerank_tokens": ("keep each window's vision tokens at ingestion so rerank decodes no video: on, off, or auto "
                      "(when a window's tokens take at most 256 KiB, e.g. the demo model's 48 KiB)", None),
    "thumbnail_size": ("longer side of the JPEG thumbnails made at ingestion, pixels", None),
    "micro_batching": ("encode concurrent text queries together", None),
    "batch_size": ("most queries in one micro-batch", None),
    "batch_wait_ms": ("how long a micro-batch waits for more queries, in ms: under load, clients answered by the last "
                      "batch come back within it and share the next one (a FAISS scan costs about the same for 6 "
                      "queries as for 16); a lone query pays it in full", None),
    "batch_workers": ("micro-batches that run at once, each on its own worker thread; with 2 or more, give each "
                      "fewer encoder and search threads (workers x threads = cores)", None),
    "queue_size": ("queries waiting for the encoder before the service answers 503", None),
    "dynamic_padding": ("pad the query texts of a micro-batch to the longest of them instead of to --max-text-tokens: "
                        "the same vectors (padding is masked), a fraction of the encoder's work for short queries",
                        None),
    "encoder_threads": ("torch threads of every encoder forward (queries and ingestion); default: OMP_NUM_THREADS, "
                        "else one per core, measured fastest on an idle 2-core machine (1 was steadier on a machine "
                        "shared with other jobs: docs/benchmarks.md, Service); 0: one per core", None),
    "search_threads": ("OpenMP threads of a FAISS search, with BLAS for batched exact search; the encoder and the "
                       "search of a micro-batch run one after the other, so this and --encoder-threads share the "
                       "same cores (docs/benchmarks.md, Service, measured the choice); default: OMP_NUM_THREADS, "
                       "else one per core; 0: FAISS as shipped (a thread per core, BLAS only from 128,000 queries at "
                       "once)", None),
    "query_cache_size": ("query vectors kept in an LRU cache (keyed by the model's fingerprint and the text), so a "
                         "repeated query skips the encoder; hits and misses in /metrics (vmr_query_cache_total); 0: "
                         "no cache", None),
    "job_queue_size": ("ingestion jobs waiting before POST /videos answers 503", None),
    "checkpoint_interval_s": ("seconds between writes of the index caches to disk", None),
    "index_backend": ("where the library lives: faiss (embedded, under <data_dir>/index) or milvus (a server that "
                      "several replicas share; pip install -e \".[scale]\")", None),
    "milvus_uri": ("the Milvus server, with --index-backend milvus", None),
    "milvus_token": ("\"user:password\" when the Milvus server has authentication on", "none"),
    "milvus_collection": ("prefix of the library's Milvus collections (<name>_segments, _videos, _texts, _meta)",
                          None),
    "milvus_fields": ("user fields kept as typed Milvus columns, e.g. camera:text,year:number,indoor:bool (kinds: "
                      "text, number, bool); fixed when the collections are made, and every video must carry them; "
                      "other fields are JSON", "none"),
}


def _help(f) -> str:
    text, default = FIELD_HELP.get(f.name, ("", None))
    if default is None:
        default = str(f.default).lower() if isinstance(f.default, bool) else str(f.default)
    return f"{text} (env {ENV_PREFIX}{f.name.upper()}; default: {default})".lstrip()


def _scalar_fields():
    return [f for f in fields(ServiceConfig) if f.name != "index"]


def _field_type(f) -> type:
    default = f.default
    if isinstance(default, bool):
        return _parse_bool
    if isinstance(default, (int, float)):
        return type(default)
    return str


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m service",
        description="Video-text retrieval service. Every flag can also be set as an environment variable "
                    f"{ENV_PREFIX}<FLAG> (e.g. {ENV_PREFIX}PORT=9000). With no --model-path and no --library it "
                    "builds and serves the embedded synthetic demo library; --library DIR indexes a folder of your "
                    "own videos and keeps watching it.")
    for f in _scalar_fields():
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=_field_type(f), default=None,
                            help=_help(f))
    parser.add_argument("--index-kind", default=None, choices=list(KINDS),
                        help=f"FAISS structure; auto: exact (flat) for a small library, IVF-Flat above a size "
                             f"threshold (env {ENV_PREFIX}INDEX_KIND; default: auto)")
    parser.add_argument("--index-nprobe", default=None, type=int,
                        help=f"IVF lists scanned per query: more is slower and finds more of the exact top-k "
                             f"(env {ENV_PREFIX}INDEX_NPROBE; default: 16 for IVF-Flat, 32 for IVF-PQ)")
    return parser


def config_from_args(argv: list[str] | None = None, environ: dict | None = None) -> ServiceConfig:
    """Flags win over `VMR_*` variables, which win over the defaults."""
    environ = os.environ if environ is None else environ
    args = build_parser().parse_args(argv)
    values = {}
    for f in _scalar_fields():
        value = getattr(args, f.name)
        if value is None and (raw := environ.get(ENV_PREFIX + f.name.upper())) not in (None, ""):
            try:
                value = _field_type(f)(raw)
            except (ValueError, argparse.ArgumentTypeError) as err:
                raise ValueError(f"environment variable {ENV_PREFIX}{f.name.upper()}={raw!r}: {err}") from None
        if value is not None:
            values[f.name] = value
    kind = args.index_kind or environ.get(ENV_PREFIX + "INDEX_KIND") or "auto"
    nprobe = args.index_nprobe
    if nprobe is None and (raw := environ.get(ENV_PREFIX + "INDEX_NPROBE")) not in (None, ""):
        try:
            nprobe = int(raw)
        except ValueError:
            raise ValueError(f"environment variable {ENV_PREFIX}INDEX_NPROBE={raw!r}: not an integer") from None
    if nprobe is not None and nprobe < 1:
        raise ValueError(f"index nprobe must be >= 1, got {nprobe}")
    if "model_path" not in values and "library" not in values:
        values.setdefault("embedded_default", True)
    return ServiceConfig(index=IndexConfig(kind=kind, nprobe=nprobe or 0), **values)
