"""Writes the index's caches to disk every `interval_s` seconds while something changed, and once more at stop."""
from __future__ import annotations

import logging
import threading

from index import Library

log = logging.getLogger(__name__)


class Checkpointer:
    def __init__(self, library: Library, interval_s: float):
        self.library, self.interval_s = library, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="checkpointer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.library.checkpoint()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.library.checkpoint()
            except Exception:  # a failed checkpoint loses nothing (SQLite holds the data); retry next round
                log.exception("index checkpoint failed")
