"""Writes the index's caches to disk every `interval_s` seconds while something changed, and once more at stop."""
from __future__ import annotations

import logging
import threading

from index import VideoStore

log = logging.getLogger(__name__)


class Checkpointer:
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
