"""Background ingestion jobs: one worker thread, a bounded queue, status and progress for GET /jobs/{id}.

Job records live in memory; what a finished job wrote is durable in the library (SQLite), so after a restart the
videos stay and only the job records are gone.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from service.batcher import Overloaded

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"


@dataclass
class Job:
    id: str
    kind: str
    source: str
    status: str = QUEUED
    progress: float = 0.0
    video_id: int | None = None
    error: str | None = None
    created: float = field(default_factory=time.time)
    finished: float | None = None


# A job body gets a progress callback (fraction in [0, 1]) and returns the id of the video it stored.
JobBody = Callable[[Callable[[float], None]], int]


class JobManager:
    def __init__(self, max_queue: int = 1000, on_finish: Callable[[Job], None] | None = None):
        self._jobs: dict[str, Job] = {}
        self._queue: queue.Queue = queue.Queue(max_queue)
        self._on_finish = on_finish
        self._thread = threading.Thread(target=self._run, name="ingest-worker", daemon=True)
        self._stopping = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stopping.set()
        self._queue.put(None)  # wake the worker; it finishes the running job first
        self._thread.join(timeout)

    def submit(self, kind: str, source: str, body: JobBody) -> Job:
        job = Job(uuid.uuid4().hex, kind, source)
        try:
            self._queue.put_nowait((job, body))
        except queue.Full:
            raise Overloaded(f"ingestion queue is full ({self._queue.maxsize} jobs waiting); retry later") from None
        self._jobs[job.id] = job
        return job

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in (QUEUED, RUNNING, DONE, FAILED)}
        for job in list(self._jobs.values()):
            out[job.status] += 1
        return out

    def _run(self) -> None:
        while not self._stopping.is_set():
            item = self._queue.get()
            if item is None:
                break
            job, body = item
            job.status = RUNNING

            def progress(fraction: float, job=job) -> None:
                job.progress = round(min(1.0, max(0.0, fraction)), 4)

            try:
                job.video_id = body(progress)
                job.progress, job.status = 1.0, DONE
            except Exception as err:
                log.warning("job %s (%s) failed: %s", job.id, job.source, err)
                job.error, job.status = str(err) or type(err).__name__, FAILED
            job.finished = time.time()
            if self._on_finish:
                self._on_finish(job)
