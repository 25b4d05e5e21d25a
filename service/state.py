"""Everything a request handler needs, built once per app (`build_state`) and stored on `app.state.service`."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from encoders.video_text import Embedder, demo_model_path, load_embedder
from index import FaissLibrary, Library
from service.batcher import MicroBatcher
from service.checkpointer import Checkpointer
from service.config import ServiceConfig
from service.jobs import JobManager
from service.metrics import ServiceMetrics
from service.queries import run_searches

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
    default_library: dict = field(default_factory=dict)  # progress of the embedded default, when it is built
    library_folder: dict = field(default_factory=dict)  # progress of --library (service.folder_watch), when given


def resolve_model_path(config: ServiceConfig) -> str:
    """The configured model, else the committed demo model (or $VMR_DEMO_MODEL)."""
    if config.model_path:
        return config.model_path
    demo = Path(demo_model_path())
    if not demo.exists():
        raise FileNotFoundError(f"no model configured and no demo model at {demo}: pass --model-path DIR "
                                "(a save_pretrained folder or an official .pth)")
    return str(demo)


def open_library(config: ServiceConfig, dim: int) -> Library:
    """The configured backend: FAISS + SQLite under the data dir, or the Milvus server every replica shares."""
    if config.index_backend == "milvus":
        from index.milvus_library import MilvusLibrary

        kind = {"auto": "hnsw", "ivfpq": "ivf"}.get(config.index.kind, config.index.kind)
        return MilvusLibrary(config.milvus_uri, dim, config.milvus_collection, config.milvus_token, kind)
    return FaissLibrary(config.data_dir / "index", dim, config.index)


def build_state(config: ServiceConfig, embedder: Embedder | None = None) -> ServiceState:
    if embedder is None:
        embedder = load_embedder(resolve_model_path(config), num_frames=config.num_frames,
                                 frame_size=config.frame_size, max_text_tokens=config.max_text_tokens)
    config.media_root.mkdir(parents=True, exist_ok=True)
    library = open_library(config, embedder.dim)
    log.info("library: %d videos, %d texts, index %s", library.num_videos(), library.num_texts(), library.health())
    metrics = ServiceMetrics()

    def on_batch(size: int, seconds: float) -> None:
        metrics.batch_size.observe(size)
        metrics.batch_seconds.observe(seconds)

    batch = config.batch_size if config.micro_batching else 1
    wait = config.batch_wait_ms / 1000
    text_batcher = MicroBatcher(embedder.embed_texts, batch, wait, config.queue_size, on_batch)
    search_batcher = MicroBatcher(partial(run_searches, embedder, library, config), batch, wait, config.queue_size, on_batch)
    jobs = JobManager(config.job_queue_size, on_finish=lambda job: metrics.jobs.labels(job.status).inc(),
                      record_path=config.data_dir / "jobs.sqlite")
    return ServiceState(config, embedder, library, text_batcher, search_batcher, jobs, metrics,
                        Checkpointer(library, config.checkpoint_interval_s))
