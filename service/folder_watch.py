"""`python -m service --library DIR`: every video under a folder the operator names is indexed at start, and files
added later are picked up by polling every `library_poll_s` seconds (portable: any filesystem, network mounts too).

A file is admitted as a POST /videos path is (probed, then queued through `service.ingest`), but it may lie outside
the media root: the operator trusts that folder by naming it. Skipped: a file whose absolute path is already in the
library (so a restart re-indexes nothing); a file still being written (changed since the last look and younger than
one interval); a file that failed to decode or was refused, once, with the reason logged, until it changes (mtime or
size). Deleting a file from the folder does not delete its video.

Progress is kept in `state.library_folder` and answered by GET /healthz as `library`: {folder, files_seen, indexed,
pending, failed, status}. Note for the web page (another issue): show that object, e.g. "12/40 indexed, 3 failed".
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from service import ingest
from service.errors import Overloaded, ServiceError
from service.jobs import DONE, FAILED, Job
from service.state import ServiceState
from service.uploads import VIDEO_SUFFIXES, probe

log = logging.getLogger(__name__)

SETTLING, READY, PENDING, INDEXED, REFUSED = "settling", "ready", "pending", "indexed", "failed"


@dataclass
class _File:
    stamp: tuple[int, int]  # (mtime_ns, size) when last looked at
    status: str
    job: Job | None = None


def indexed_paths(state: ServiceState) -> set[str]:
    """Absolute paths of the videos in the library (the watcher's one question to the index)."""
    paths, offset = set(), 0
    while True:
        page, total = state.library.list_videos(None, offset, 1000)
        paths.update(record.path for record in page)
        offset += len(page)
        if not page or offset >= total:
            return paths


class FolderWatcher:
    def __init__(self, state: ServiceState, folder: Path, interval: float):
        self.state, self.folder, self.interval = state, folder.resolve(), interval
        self.files: dict[Path, _File] = {}
        self.progress = state.library_folder
        self.progress.update(folder=str(self.folder), files_seen=0, indexed=0, pending=0, failed=0, status="scanning")
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="library-folder", daemon=True)

    def start(self) -> "FolderWatcher":
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.scan()
            except Exception as err:  # the folder vanished or became unreadable: say so, keep looking
                log.exception("scanning the library folder %s failed", self.folder)
                self.progress["status"] = f"failed: {err}"
            self._stopping.wait(self.interval)

    def scan(self) -> None:
        """One look at the folder: note new and changed files, admit the settled ones, follow their jobs, count."""
        now = time.time()
        present = {}
        for path in sorted(self.folder.rglob("*")):
            if path.suffix.lower() in VIDEO_SUFFIXES and path.is_file():
                stat = path.stat()
                present[path] = (stat.st_mtime_ns, stat.st_size)
        for path in set(self.files) - set(present):  # deleted from the folder: its video stays in the library
            del self.files[path]
        for path, stamp in present.items():
            entry = self.files.get(path)
            if entry is None or (entry.status in (SETTLING, REFUSED) and entry.stamp != stamp):
                old = now - stamp[0] / 1e9 >= self.interval
                self.files[path] = _File(stamp, READY if old else SETTLING)
            elif entry.status == SETTLING:
                entry.status = READY  # unchanged since the last look: done being written
            elif entry.status == PENDING and entry.job.status in (DONE, FAILED):
                entry.status = INDEXED if entry.job.status == DONE else REFUSED
                if entry.status == REFUSED:
                    log.warning("library file %s not indexed: %s (retried when it changes)", path, entry.job.error)
        self._admit([path for path, entry in self.files.items() if entry.status == READY])
        counts = {status: 0 for status in (SETTLING, READY, PENDING, INDEXED, REFUSED)}
        for entry in self.files.values():
            counts[entry.status] += 1
        waiting = counts[SETTLING] + counts[READY] + counts[PENDING]
        self.progress.update(files_seen=len(present), indexed=counts[INDEXED], pending=waiting,
                             failed=counts[REFUSED], status="indexing" if waiting else "watching")

    def _admit(self, ready: list[Path]) -> None:
        """Queue the embedding of every ready file not in the library yet; a full queue leaves the rest for later."""
        if not ready:
            return
        known = indexed_paths(self.state)
        for path in ready:
            entry = self.files[path]
            if str(path) in known:
                entry.status = INDEXED
                continue
            relative = path.relative_to(self.folder).as_posix()
            try:
                probe(path, self.state.config, f"library file {relative!r}")
                entry.job = ingest.submit(self.state, path, {"filename": path.name, "library_path": relative}, None,
                                          "library", relative)
            except Overloaded:
                return
            except ServiceError as err:
                log.warning("library file %s not indexed: %s (retried when it changes)", path, err.message)
                entry.status = REFUSED
                continue
            entry.status = PENDING


def start_folder_watch(state: ServiceState) -> FolderWatcher:
    return FolderWatcher(state, state.config.library, state.config.library_poll_s).start()
