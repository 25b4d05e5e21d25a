"""An LRU cache of query text vectors: a repeated query skips the text encoder.

Entries are keyed by the embedder's fingerprint (its weights and how it cuts texts) and the text, so a cache never
answers for a model or a text length other than the one that made the vector."""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from encoders.video_text import Embedder


class QueryVectorCache:
    def __init__(self, capacity: int, on_lookup: Callable[[int, int], None] | None = None):
        """`capacity` vectors at most (0: no caching); `on_lookup(hits, misses)` after every call."""
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity}")
        self.capacity, self.on_lookup = capacity, on_lookup
        self._entries: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def embed(self, embedder: Embedder, texts: list[str], dynamic_padding: bool = False) -> np.ndarray:
        """(len(texts), dim) unit vectors: cached ones as they are, the others from one `embed_texts` call."""
        keys = [(embedder.fingerprint, t) for t in texts]
        with self._lock:
            found = {k: self._entries[k] for k in keys if k in self._entries}
            for k in found:
                self._entries.move_to_end(k)
        missing = list(dict.fromkeys(k for k in keys if k not in found))
        if missing:
            fresh = embedder.embed_texts([t for _, t in missing], dynamic_padding)
            fresh.setflags(write=False)
            found.update(zip(missing, fresh))
            if self.capacity:
                with self._lock:
                    self._entries.update(zip(missing, fresh))
                    while len(self._entries) > self.capacity:
                        self._entries.popitem(last=False)
        if self.on_lookup:
            self.on_lookup(len(keys) - len(missing), len(missing))
        return np.stack([found[k] for k in keys]) if keys else np.zeros((0, embedder.dim), np.float32)
