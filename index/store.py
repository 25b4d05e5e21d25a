"""The video library: SQLite as the source of truth, FAISS files as checkpointed, self-healing caches.

A write is acknowledged once its SQLite transaction commits; the FAISS index is updated in memory right after and
written to disk by `checkpoint()`. On open, a checkpoint whose generation matches the database is used as is; an
older one is caught up by diffing ids against SQLite; a missing or damaged one is rebuilt from SQLite.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from index.atomic import atomic_write_bytes
from index.faiss_index import IndexConfig, VectorIndex
from index.metadata import MetadataDB, TextRecord, VideoRecord

log = logging.getLogger(__name__)


@dataclass
class VideoHit:
    """A video with the score and time span of its best-matching segment."""

    video: VideoRecord
    score: float
    start: float
    end: float


@dataclass
class TextHit:
    text: TextRecord
    score: float


@dataclass
class _Cache:
    """One FAISS cache over one SQLite collection."""

    collection: str
    path: Path
    index: VectorIndex
    saved_generation: int = -1
    recovered: str = "empty"  # how it was opened: loaded, caught-up, rebuilt, empty


def normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class VideoStore:
    """Videos as time segments with one vector each, plus a gallery of caption vectors, in `root`."""

    def __init__(self, root: str | Path, dim: int, config: IndexConfig | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.config = config or IndexConfig()
        self.db = MetadataDB(self.root / "library.sqlite", dim)
        self.dim = dim
        self._lock = threading.RLock()
        self._checkpoint_lock = threading.Lock()
        self._caches = {name: self._open_cache(name) for name in ("segments", "texts")}

    # --- recovery ---
    def _open_cache(self, collection: str) -> _Cache:
        path = self.root / f"{collection}.faiss"
        db_generation = self.db.generation(collection)
        if path.exists():
            try:
                index, generation = VectorIndex.load(path, self.config)
                if index.dim != self.dim:
                    raise ValueError(f"checkpoint is {index.dim}-d, library is {self.dim}-d")
                if self.config.kind not in ("auto", index.kind):
                    raise ValueError(f"checkpoint is {index.kind}, configured kind is {self.config.kind}")
            except (ValueError, RuntimeError) as err:
                log.warning("%s unusable (%s): rebuilding from SQLite", path, err)
            else:
                cache = _Cache(collection, path, index, generation, "loaded")
                if generation != db_generation:
                    self._catch_up(cache)
                    cache.recovered = "caught-up"
                return cache
        ids, vectors = self.db.vectors(collection)
        index = VectorIndex.build(self.dim, self.config, ids, vectors)
        return _Cache(collection, path, index, -1, "rebuilt" if len(ids) else "empty")

    def _catch_up(self, cache: _Cache) -> None:
        """Make the cache hold exactly the ids SQLite holds (vectors of a given id never change)."""
        have, want = cache.index.ids(), self.db.ids(cache.collection)
        stale = np.setdiff1d(have, want)
        missing = np.setdiff1d(want, have)
        cache.index.remove(stale)
        ids, vectors = self.db.vectors(cache.collection, missing)
        cache.index.add(ids, vectors)
        log.info("%s: caught up (%d removed, %d added)", cache.path.name, len(stale), len(ids))

    def recovery(self) -> dict[str, str]:
        return {name: cache.recovered for name, cache in self._caches.items()}

    # --- persistence ---
    def checkpoint(self) -> bool:
        """Write every cache whose generation moved since it was last saved (atomically). True if any was written.

        The index is serialized under the store lock but written to disk outside it, so searches wait only for the
        in-memory copy. In `auto` mode a cache whose size now calls for another index kind is rebuilt first.
        """
        wrote = False
        with self._checkpoint_lock:
            for name, cache in self._caches.items():
                with self._lock:
                    generation = self.db.generation(name)
                    if generation == cache.saved_generation:
                        continue
                    wanted = self.config.resolve_kind(len(cache.index))
                    if self.config.kind == "auto" and wanted != cache.index.kind and \
                            len(cache.index) >= self.config.min_train_size(len(cache.index)):
                        ids, vectors = self.db.vectors(name)
                        cache.index = VectorIndex.build(self.dim, self.config, ids, vectors)
                    data = cache.index.to_bytes(generation)
                atomic_write_bytes(cache.path, data)
                cache.saved_generation = generation
                wrote = True
        return wrote

    def close(self) -> None:
        self.checkpoint()
        self.db.close()

    # --- videos ---
    def add_video(self, path: str, duration: float | None, spans, vectors, fields: dict | None = None,
                  video_id: int | None = None) -> int:
        """Store a video as segments `spans` [(start, end), …] with one vector each (normalized here).

        With `video_id` of an existing video this is an upsert: its old segments are replaced.
        """
        return self.add_videos([(path, duration, spans, vectors, fields, video_id)])[0]

    def add_videos(self, items) -> list[int]:
        """Many `add_video` argument tuples (path, duration, spans, vectors, fields, video_id) in one transaction."""
        items = [(p, d, s, normalize(np.atleast_2d(v)), f, i) for p, d, s, v, f, i in items]
        with self._lock:
            written = self.db.put_videos(items)
            index = self._caches["segments"].index
            index.remove([sid for _, _, removed in written for sid in removed])
            index.add([sid for _, new, _ in written for sid in new], np.concatenate([it[3] for it in items]))
        return [vid for vid, _, _ in written]

    def delete_video(self, video_id: int) -> bool:
        with self._lock:
            seg_ids = self.db.delete_video(video_id)
            if seg_ids is None:
                return False
            self._caches["segments"].index.remove(seg_ids)
        return True

    def get_video(self, video_id: int) -> VideoRecord | None:
        return self.db.get_videos([video_id]).get(video_id)

    def num_videos(self) -> int:
        return self.db.count_videos()

    def segment_vectors(self, video_id: int) -> np.ndarray:
        """(num_segments, dim) unit vectors of a video in time order; empty for an unknown id."""
        return self.db.video_segment_vectors(video_id)

    def search(self, query, k: int = 10, min_score: float = -1.0, filters: dict | None = None,
               exclude: set[int] | frozenset = frozenset()) -> list[VideoHit]:
        """Top-k videos for one query vector, each scored by its best segment (see `search_many`)."""
        return self.search_many(np.reshape(query, (1, -1)), k, [min_score], [filters], [exclude])[0]

    def search_many(self, queries, k: int = 10, min_scores=None, filters=None, excludes=None) -> list[list[VideoHit]]:
        """Top-k videos for each query row, in one FAISS call per round (batched queries use BLAS).

        A video's score is its best segment's. `filters[i]` keeps videos whose user fields equal each given value
        (a list value means any of). Segments are fetched in growing rounds until every query has k distinct
        videos or the index is exhausted. Hits carry video records without their segment lists.
        """
        queries = normalize(np.atleast_2d(np.asarray(queries, np.float32)))
        nq = len(queries)
        min_scores = [-1.0] * nq if min_scores is None else list(min_scores)
        filters = [None] * nq if filters is None else list(filters)
        excludes = [frozenset()] * nq if excludes is None else list(excludes)
        found: list[dict[int, tuple[float, int]]] = [{} for _ in range(nq)]
        records: dict = {}
        with self._lock:
            index = self._caches["segments"].index
            total = len(index)
            fetch = min(total, max(4 * k, 32))
            pending = list(range(nq))
            while pending and fetch > 0:
                scores, ids = index.search(queries[pending], fetch)
                owners = self.db.segment_owners(np.unique(ids[ids >= 0]))
                records.update(self.db.get_videos({o[0] for o in owners.values()} - records.keys(),
                                                  with_segments=False))
                still = []
                for row, q in enumerate(pending):
                    best = found[q] = {}
                    for score, sid in zip(scores[row], ids[row]):
                        if sid < 0 or score < min_scores[q] or sid not in owners:
                            continue
                        vid = owners[sid][0]
                        if vid not in best and vid not in excludes[q] and vid in records and \
                                _matches(records[vid].fields, filters[q]):
                            best[vid] = (float(score), int(sid))
                    exhausted = fetch >= total or scores[row][-1] < min_scores[q]
                    if len(best) < k and not exhausted:
                        still.append(q)
                pending, fetch = still, min(total, fetch * 4)
            spans = self.db.segment_owners([sid for best in found for _, sid in best.values()])
        out = []
        for best in found:
            hits = [VideoHit(records[v], s, spans[sid][1], spans[sid][2]) for v, (s, sid) in best.items()]
            hits.sort(key=lambda h: -h.score)
            out.append(hits[:k])
        return out

    # --- caption gallery ---
    def add_texts(self, texts: list[str], vectors, fields: list[dict] | None = None) -> list[int]:
        vectors = normalize(np.atleast_2d(vectors))
        with self._lock:
            ids = self.db.add_texts(texts, vectors, fields)
            self._caches["texts"].index.add(ids, vectors)
        return ids

    def num_texts(self) -> int:
        return self.db.count_texts()

    def search_texts(self, query, k: int = 10, min_score: float = -1.0) -> list[TextHit]:
        query = normalize(np.asarray(query, np.float32).reshape(1, -1))
        with self._lock:
            scores, ids = self._caches["texts"].index.search(query, k)
            keep = [(float(s), int(i)) for s, i in zip(scores[0], ids[0]) if i >= 0 and s >= min_score]
            records = self.db.get_texts([i for _, i in keep])
        return [TextHit(records[i], s) for s, i in keep if i in records]


def _matches(fields: dict, filters: dict | None) -> bool:
    if not filters:
        return True
    for key, want in filters.items():
        have = fields.get(key)
        if isinstance(want, list) and not isinstance(have, list):
            if have not in want:
                return False
        elif have != want:
            return False
    return True
