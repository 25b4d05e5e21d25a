"""Everything a request handler needs, built once per app and stored on `app.state.service`."""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from index import VideoStore
from service.batcher import MicroBatcher
from service.config import ServiceConfig
from service.embedder import Embedder
from service.jobs import JobManager
from service.metrics import ServiceMetrics

log = logging.getLogger(__name__)


class Checkpointer:
    """Writes the FAISS caches every `interval_s` seconds while something changed, and once more at stop."""

    def __init__(self, store: VideoStore, interval_s: float):
        self.store, self.interval_s = store, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="checkpointer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.store.checkpoint()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.store.checkpoint()
            except Exception:  # a failed checkpoint loses nothing (SQLite holds the data); retry next round
                log.exception("index checkpoint failed")


@dataclass(frozen=True)
class SearchQuery:
    text: str
    k: int
    min_score: float
    filters: dict | None


def run_searches(embedder: Embedder, store: VideoStore, queries: list[SearchQuery]) -> list[list]:
    """One encoder forward and one batched FAISS search for a micro-batch of text queries."""
    vectors = embedder.embed_texts([q.text for q in queries])
    hits = store.search_many(vectors, max(q.k for q in queries), [q.min_score for q in queries],
                             [q.filters for q in queries])
    return [h[:q.k] for h, q in zip(hits, queries)]


@dataclass
class ServiceState:
    config: ServiceConfig
    embedder: Embedder
    store: VideoStore
    text_batcher: MicroBatcher  # texts -> vectors (POST /embed)
    search_batcher: MicroBatcher  # SearchQuery -> hits (POST /search): one forward + one FAISS call per batch
    jobs: JobManager
    metrics: ServiceMetrics
    checkpointer: Checkpointer
    default_library: dict = field(default_factory=dict)  # progress of the embedded default, when it is built
