"""Background ingestion jobs: one worker thread, a bounded queue, status and progress for GET /jobs/{id}.

With a `record_path`, job records are kept in SQLite too (written when a job is submitted, starts and ends), so
GET /jobs/{id} still answers after a restart; a job that was queued or running when the process died is reported
as failed ("interrupted"), since its upload and queue slot did not survive, and the client submits it again.
"""
from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import astuple, dataclass, field, fields
from pathlib import Path

from service.errors import Overloaded

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

INTERRUPTED = "interrupted: the service stopped before this job finished; submit the video again"


class JobRecords:
    """Durable job records: one SQLite row per job, replaced whole on every state change (from two threads)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._columns = [f.name for f in fields(Job)]
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"CREATE TABLE IF NOT EXISTS jobs ({', '.join(self._columns)}, PRIMARY KEY (id))")

    def load(self) -> dict[str, Job]:
        """Every stored job; those left queued or running by a previous process are marked failed and saved so."""
        with self._lock:
            rows = self._db.execute(f"SELECT {', '.join(self._columns)} FROM jobs ORDER BY created").fetchall()
        jobs = {row[0]: Job(*row) for row in rows}
        for job in jobs.values():
            if job.status in (QUEUED, RUNNING):
                job.status, job.error, job.finished = FAILED, INTERRUPTED, time.time()
                self.save(job)
        return jobs

    def save(self, job: Job) -> None:
        marks = ", ".join("?" * len(self._columns))
        with self._lock:
            self._db.execute(f"INSERT OR REPLACE INTO jobs VALUES ({marks})", astuple(job))

    def delete(self, job_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

    def close(self) -> None:
        with self._lock:
            self._db.close()


class JobManager:
    def __init__(self, max_queue: int = 1000, on_finish: Callable[[Job], None] | None = None,
                 record_path: Path | None = None):
        self._records = JobRecords(record_path) if record_path is not None else None
        self._jobs: dict[str, Job] = self._records.load() if self._records else {}
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
        if self._records and not self._thread.is_alive():
            self._records.close()

    def _save(self, job: Job) -> None:
        if self._records:
            self._records.save(job)

    def submit(self, kind: str, source: str, body: JobBody) -> Job:
        job = Job(uuid.uuid4().hex, kind, source)
        self._jobs[job.id] = job
        self._save(job)  # before the worker can see it, so a later state is never overwritten by "queued"
        try:
            self._queue.put_nowait((job, body))
        except queue.Full:
            del self._jobs[job.id]
            if self._records:
                self._records.delete(job.id)
            raise Overloaded(f"ingestion queue is full ({self._queue.maxsize} jobs waiting); retry later") from None
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
            self._save(job)

            def progress(fraction: float, job=job) -> None:
                job.progress = round(min(1.0, max(0.0, fraction)), 4)

            try:
                job.video_id = body(progress)
                job.progress, job.status = 1.0, DONE
            except Exception as err:
                log.warning("job %s (%s) failed: %s", job.id, job.source, err)
                job.error, job.status = str(err) or type(err).__name__, FAILED
            job.finished = time.time()
            self._save(job)
            if self._on_finish:
                self._on_finish(job)
