"""Prometheus metrics, in a registry owned by one app instance (so tests can build several apps)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("vmr_http_requests", "HTTP requests", ["route", "method", "status"],
                                registry=self.registry)
        self.latency = Histogram("vmr_http_request_seconds", "HTTP request latency", ["route"],
                                 registry=self.registry,
                                 buckets=(.002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
        self.batch_size = Histogram("vmr_batch_size", "requests per micro-batch", registry=self.registry,
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128))
        self.batch_seconds = Histogram("vmr_batch_seconds", "time per micro-batch (encoder, and FAISS for search)",
                                       registry=self.registry)
        self.query_cache = Counter("vmr_query_cache", "query texts looked up in the vector cache, by outcome",
                                   ["outcome"], registry=self.registry)
        self.overloaded = Counter("vmr_overloaded", "requests refused with 503 (queue full)", registry=self.registry)
        self.jobs = Counter("vmr_ingest_jobs", "finished ingestion jobs", ["status"], registry=self.registry)
        self.videos = Gauge("vmr_videos", "videos in the library", registry=self.registry)
        self.texts = Gauge("vmr_texts", "captions in the text gallery", registry=self.registry)
        self.queue_depth = Gauge("vmr_queue_depth", "requests waiting for a micro-batch", registry=self.registry)
