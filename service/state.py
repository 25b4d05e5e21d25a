"""Everything a request handler needs, built once per app (`build_state`) and stored on `app.state.service`."""
from __future__ import annotations

import fcntl
import json
import logging
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO

from encoders.heap import retain_freed_memory
from encoders.video_text import Embedder, demo_model_path, load_embedder, set_encoder_threads
from index import FaissLibrary, Library, set_search_threads
from index.filters import parse_declared
from service.batcher import MicroBatcher
from service.checkpointer import Checkpointer
from service.config import ServiceConfig
from service.jobs import JobManager
from service.layout import jobs_file, layout
from service.metrics import ServiceMetrics
from service.queries import run_searches
from service.query_cache import QueryVectorCache

log = logging.getLogger(__name__)


@dataclass
class ServiceState:
    config: ServiceConfig
    embedder: Embedder
    library: Library
    text_batcher: MicroBatcher  # texts -> vectors (POST /embed)
    search_batcher: MicroBatcher  # PlannedSearch -> Page (POST /search): one forward + one index call per batch
    jobs: JobManager
    metrics: ServiceMetrics
    checkpointer: Checkpointer
    query_cache: QueryVectorCache
    data_lock: IO  # held while this process uses the data dir
    default_library: dict = field(default_factory=dict)  # progress of the embedded default, when it is built
    library_folder: dict = field(default_factory=dict)  # progress of --library (service.folder_watch), when given
    cleaned: dict[str, int] = field(default_factory=dict)  # files of no video removed at start, by kind


def resolve_model_path(config: ServiceConfig) -> str:
    """The configured model, else the committed demo model (or $VMR_DEMO_MODEL)."""
    if config.model_path:
        return config.model_path
    demo = Path(demo_model_path())
    if not demo.exists():
        raise FileNotFoundError(f"no model configured and no demo model at {demo}: pass --model-path DIR "
                                "(a save_pretrained folder or an official .pth)")
    return str(demo)


MODEL_META = "model"  # {"fingerprint", "model"} of the embedder that made the library's vectors
REINDEX_META = "reindex"  # the fingerprint a reindex is moving the library to, until it is done


def lock_data_dir(data_dir: Path) -> IO:
    """An exclusive lock on the data dir for this process's lifetime: a second service, or a reindex, on the same
    folder would write the same SQLite behind the other's in-memory index."""
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = open(data_dir / ".lock", "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise ValueError(f"another process (a running service or reindex) uses {data_dir}; stop it first") from None
    return handle


def check_model(config: ServiceConfig, library: Library, embedder: Embedder, model: str) -> None:
    """The library's vectors must come from this embedder: its fingerprint is recorded with the library (on the
    first start, or while nothing is stored) and compared on every later start (ValueError naming the way out)."""
    command = f"python -m service reindex --data-dir {config.data_dir} --model-path {model}"
    if pending := library.get_meta(REINDEX_META):
        raise ValueError(f"a reindex of {config.data_dir} to the model with fingerprint {pending} did not finish; "
                         f"run it again: {command}")
    recorded = recorded_model(library)
    if recorded is not None and recorded["fingerprint"] != embedder.fingerprint and \
            (library.num_videos() or library.num_texts()):
        raise ValueError(f"the library in {config.data_dir} holds vectors made by another model ({recorded['model']}, "
                         f"fingerprint {recorded['fingerprint']}) than the one configured ({model}, fingerprint "
                         f"{embedder.fingerprint}); searching would compare two embedding spaces. Serve it with the "
                         f"model it was built with, or re-embed every video with this one: {command}")
    if recorded is None and (library.num_videos() or library.num_texts()):
        log.warning("the library predates model fingerprints: recording %s as the model that made it", model)
    record_model(library, embedder.fingerprint, model)


def recorded_model(library: Library) -> dict | None:
    """{"fingerprint", "model"} of the embedder the library's vectors come from, when one was recorded."""
    stored = library.get_meta(MODEL_META)
    return json.loads(stored) if stored is not None else None


def record_model(library: Library, fingerprint: str, model: str) -> None:
    """`fingerprint` is an `Embedder.fingerprint`: the vectors' model, the same for a served model and for the
    files of the import format its vectors were written to."""
    library.set_meta(MODEL_META, json.dumps({"fingerprint": fingerprint, "model": model}))


def open_library(config: ServiceConfig, dim: int) -> Library:
    """The configured backend: FAISS + SQLite under the data dir, or the Milvus server every replica shares."""
    if config.index_backend == "milvus":
        from index.milvus_library import MilvusLibrary

        kind = {"auto": "hnsw", "ivfpq": "ivf", "ivfflat": "ivf"}.get(config.index.kind, config.index.kind)
        return MilvusLibrary(config.milvus_uri, dim, config.milvus_collection, config.milvus_token, kind,
                             declared=parse_declared(config.milvus_fields))
    return FaissLibrary(layout(config).index, dim, config.index)


def apply_threads(config: ServiceConfig) -> None:
    """The one place that sets how many threads the encoders (torch) and FAISS (its own OpenMP runtime) use. A
    micro-batch runs its encoder forward, then its search, so each may have the cores in turn; neither pool is
    sized for both running at once."""
    set_encoder_threads(config.encoder_threads)
    set_search_threads(config.search_threads)


def build_state(config: ServiceConfig, embedder: Embedder | None = None, check: bool = True) -> ServiceState:
    """Everything the service runs on; `check=False` skips the model check (for reindex, which replaces the
    vectors)."""
    lock = lock_data_dir(config.data_dir)
    apply_threads(config)
    retain_freed_memory()
    model = resolve_model_path(config) if embedder is None else "the embedder given to create_app"
    if embedder is None:
        embedder = load_embedder(model, num_frames=config.num_frames, frame_size=config.frame_size,
                                 max_text_tokens=config.max_text_tokens)
    config.media_root.mkdir(parents=True, exist_ok=True)
    library = open_library(config, embedder.dim)
    if check:
        check_model(config, library, embedder, model)
    log.info("library: %d videos, %d texts, index %s", library.num_videos(), library.num_texts(), library.health())
    metrics = ServiceMetrics()

    def on_batch(size: int, seconds: float) -> None:
        metrics.batch_size.observe(size)
        metrics.batch_seconds.observe(seconds)

    def on_lookup(hits: int, misses: int) -> None:
        metrics.query_cache.labels("hit").inc(hits)
        metrics.query_cache.labels("miss").inc(misses)

    cache = QueryVectorCache(config.query_cache_size, on_lookup)
    batch = config.batch_size if config.micro_batching else 1
    wait = config.batch_wait_ms / 1000
    text_batcher = MicroBatcher(partial(cache.embed, embedder, dynamic_padding=config.dynamic_padding), batch, wait,
                                config.queue_size, on_batch, config.batch_workers)
    search_batcher = MicroBatcher(partial(run_searches, embedder, library, config, cache), batch, wait,
                                  config.queue_size, on_batch, config.batch_workers)
    jobs = JobManager(config.job_queue_size, on_finish=lambda job: metrics.jobs.labels(job.status).inc(),
                      record_path=jobs_file(config))
    return ServiceState(config, embedder, library, text_batcher, search_batcher, jobs, metrics,
                        Checkpointer(library, config.checkpoint_interval_s), cache, lock)
