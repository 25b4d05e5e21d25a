"""The embedded library: SQLite as the source of truth, FAISS files as checkpointed, self-healing caches.

A write is acknowledged once its SQLite transaction commits; the FAISS index is updated in memory right after and
written to disk by `checkpoint()`. On open, a checkpoint whose generation matches the database is used as is; an
older one is caught up by diffing ids against SQLite; a missing or damaged one is rebuilt from SQLite. Which video
owns a segment, and its time span, is kept in memory (sorted arrays), so a search needs no SQL to group its hits.
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from index.atomic import atomic_write_bytes
from index.faiss_index import IndexConfig, VectorIndex
from index.filters import Filter
from index.metadata import MetadataDB
from index.records import NewVideo, TextHit, TextRecord, VideoHit, VideoRecord, normalize

log = logging.getLogger(__name__)

FILTER_CACHE_SIZE = 64


@dataclass
class _Cache:
    """One FAISS cache over one SQLite collection."""

    collection: str
    path: Path
    index: VectorIndex
    saved_generation: int = -1
    recovered: str = "empty"  # how it was opened: loaded, caught-up, rebuilt, empty


class _SegmentTable:
    """segment id -> (video id, start, end), as sorted arrays (ids only grow, so appends keep them sorted)."""

    def __init__(self, ids, videos, starts, ends):
        self.ids, self.videos, self.starts, self.ends = ids, videos, starts, ends

    def append(self, ids, video: int, spans) -> None:
        spans = np.asarray(spans, np.float64).reshape(-1, 2)
        self.ids = np.concatenate([self.ids, np.asarray(ids, np.int64)])
        self.videos = np.concatenate([self.videos, np.full(len(ids), video, np.int64)])
        self.starts = np.concatenate([self.starts, spans[:, 0]])
        self.ends = np.concatenate([self.ends, spans[:, 1]])

    def remove(self, ids) -> None:
        keep = ~np.isin(self.ids, np.asarray(ids, np.int64))
        self.ids, self.videos, self.starts, self.ends = (a[keep] for a in (self.ids, self.videos, self.starts,
                                                                           self.ends))

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """Row of each id (ids must be present)."""
        return np.searchsorted(self.ids, ids)

    def of_videos(self, video_ids: np.ndarray) -> np.ndarray:
        return self.ids[np.isin(self.videos, video_ids)]


class FaissLibrary:
    """Videos as time segments with one vector each, plus a gallery of caption vectors, in `root`."""

    keywords = True  # SQLite FTS5

    def __init__(self, root: str | Path, dim: int, config: IndexConfig | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.config = config or IndexConfig()
        self.db = MetadataDB(self.root / "library.sqlite", dim)
        self.dim = dim
        self._lock = threading.RLock()
        self._checkpoint_lock = threading.Lock()
        self._caches = {name: self._open_cache(name) for name in ("segments", "texts")}
        self._segments = _SegmentTable(*self.db.segment_table())
        self._filtered: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()

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
                if generation < self.db.replaced_at(collection):
                    raise ValueError(f"vectors were replaced in place at generation {self.db.replaced_at(collection)}")
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
        """Make the cache hold exactly the ids SQLite holds (vectors of a given id change only by
        `replace_text_vectors`, after which an older checkpoint is rebuilt instead)."""
        have, want = cache.index.ids(), self.db.ids(cache.collection)
        stale = np.setdiff1d(have, want)
        missing = np.setdiff1d(want, have)
        cache.index.remove(stale)
        ids, vectors = self.db.vectors(cache.collection, missing)
        cache.index.add(ids, vectors)
        log.info("%s: caught up (%d removed, %d added)", cache.path.name, len(stale), len(ids))

    def health(self) -> dict[str, str]:
        return {"backend": "faiss", **{name: cache.recovered for name, cache in self._caches.items()},
                "kind": self._caches["segments"].index.kind}

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
                            len(cache.index) >= self.config.min_train_size(len(cache.index), wanted):
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

    # --- meta ---
    def get_meta(self, key: str) -> str | None:
        return self.db.get_meta(f"user:{key}")

    def set_meta(self, key: str, value: str) -> None:
        self.db.set_meta(f"user:{key}", value)

    def version(self) -> int:
        return self.db.generation("segments")

    # --- videos ---
    def add_videos(self, items: list[NewVideo]) -> list[int]:
        items = [_normalized(item) for item in items]
        with self._lock:
            written = self.db.put_videos(items)
            index = self._caches["segments"].index
            removed = [sid for _, _, gone in written for sid in gone]
            index.remove(removed)
            self._segments.remove(removed)
            index.add([sid for _, new, _ in written for sid in new], np.concatenate([it.vectors for it in items]))
            for (vid, new, _), item in zip(written, items):
                self._segments.append(new, vid, item.spans)
            self._filtered.clear()
        return [vid for vid, _, _ in written]

    def delete_video(self, video_id: int) -> VideoRecord | None:
        with self._lock:
            deleted = self.db.delete_video(video_id)
            if deleted is None:
                return None
            record, seg_ids = deleted
            self._caches["segments"].index.remove(seg_ids)
            self._segments.remove(seg_ids)
            self._filtered.clear()
        return record

    def get_video(self, video_id: int) -> VideoRecord | None:
        return self.db.get_videos([video_id]).get(video_id)

    def get_videos(self, video_ids) -> dict[int, VideoRecord]:
        return self.db.get_videos(video_ids, with_segments=False)

    def list_videos(self, flt: Filter | None, offset: int, limit: int, sort: str = "video_id",
                    descending: bool = False) -> tuple[list[VideoRecord], int]:
        return self.db.list_videos(flt, offset, limit, sort, descending)

    def find_by_hash(self, content_hash: str) -> int | None:
        return self.db.find_by_hash(content_hash)

    def video_segments(self, video_id: int) -> tuple[list[tuple[float, float]], np.ndarray]:
        return self.db.video_segments(video_id)

    def num_videos(self) -> int:
        return self.db.count_videos()

    def num_segments(self) -> int:
        return len(self._segments.ids)

    # --- search ---
    def _allowed_segments(self, flt: Filter | None, exclude: frozenset[int]) -> np.ndarray | None:
        """Segment ids a search may return, or None for all; the videos a filter keeps are cached per version."""
        if flt is None and not exclude:
            return None
        if flt is None:
            keep = ~np.isin(self._segments.videos, np.fromiter(exclude, np.int64))
            return self._segments.ids[keep]
        key = (flt.key(), self.version())
        videos = self._filtered.get(key)
        if videos is None:
            videos = self.db.filter_video_ids(flt)
            self._filtered[key] = videos
            while len(self._filtered) > FILTER_CACHE_SIZE:
                self._filtered.popitem(last=False)
        else:
            self._filtered.move_to_end(key)
        if exclude:
            videos = np.setdiff1d(videos, np.fromiter(exclude, np.int64))
        return self._segments.of_videos(videos)

    def search_videos(self, queries, k: int, flt: Filter | None = None, exclude: frozenset[int] = frozenset(),
                      min_score: float = -1.0) -> list[list[VideoHit]]:
        """Segments are fetched in growing rounds until every query has k distinct videos or the candidates run
        out; one FAISS call per round for all queries still short (batched queries use BLAS)."""
        queries = normalize(np.atleast_2d(np.asarray(queries, np.float32)))
        nq = len(queries)
        found: list[dict[int, tuple[float, int]]] = [{} for _ in range(nq)]
        with self._lock:
            index = self._caches["segments"].index
            allowed = self._allowed_segments(flt, exclude)
            total = len(index) if allowed is None else len(allowed)
            fetch = min(total, max(4 * k, 32))
            pending = list(range(nq))
            table = self._segments
            while pending and fetch > 0:
                scores, ids = index.search(queries[pending], fetch, allowed)
                still = []
                for row, q in enumerate(pending):
                    ok = (ids[row] >= 0) & (scores[row] >= min_score)
                    seg, sco = ids[row][ok], scores[row][ok]
                    videos = table.videos[table.rows(seg)]
                    best = found[q] = {}
                    for vid, s, sid in zip(videos.tolist(), sco.tolist(), seg.tolist()):
                        if vid not in best:
                            best[vid] = (s, sid)
                    exhausted = fetch >= total or (len(sco) and sco[-1] < min_score) or len(sco) < fetch
                    if len(best) < k and not exhausted:
                        still.append(q)
                pending, fetch = still, min(total, fetch * 4)
            chosen = [sorted(best.items(), key=lambda item: (-item[1][0], item[0]))[:k] for best in found]
            records = self.db.get_videos({vid for hits in chosen for vid, _ in hits}, with_segments=False)
            rows = {sid: table.rows(np.array([sid]))[0] for hits in chosen for _, (_, sid) in hits}
            out = [[VideoHit(records[vid], s, sid, float(table.starts[rows[sid]]), float(table.ends[rows[sid]]))
                    for vid, (s, sid) in hits if vid in records] for hits in chosen]
        return out

    def keyword_search(self, text: str, limit: int, flt: Filter | None = None) -> list[tuple[int, float]]:
        return self.db.keyword_search(text, limit, flt)

    # --- caption gallery ---
    def add_texts(self, texts: list[str], vectors, fields: list[dict] | None = None) -> list[int]:
        vectors = normalize(np.atleast_2d(vectors))
        with self._lock:
            ids = self.db.add_texts(texts, vectors, fields)
            self._caches["texts"].index.add(ids, vectors)
        return ids

    def replace_text_vectors(self, ids: list[int], vectors) -> None:
        vectors = normalize(np.atleast_2d(vectors))
        with self._lock:
            self.db.replace_text_vectors(ids, vectors)
            index = self._caches["texts"].index
            index.remove(ids)
            index.add(ids, vectors)

    def list_texts(self, offset: int, limit: int) -> list[TextRecord]:
        return self.db.list_texts(offset, limit)

    def num_texts(self) -> int:
        return self.db.count_texts()

    def search_texts(self, query, k: int = 10, min_score: float = -1.0) -> list[TextHit]:
        query = normalize(np.asarray(query, np.float32).reshape(1, -1))
        with self._lock:
            scores, ids = self._caches["texts"].index.search(query, k)
            keep = [(float(s), int(i)) for s, i in zip(scores[0], ids[0]) if i >= 0 and s >= min_score]
            records = self.db.get_texts([i for _, i in keep])
        return [TextHit(records[i], s) for s, i in keep if i in records]


def _normalized(item: NewVideo) -> NewVideo:
    vectors = normalize(np.atleast_2d(item.vectors))
    return NewVideo(item.path, item.duration, [tuple(map(float, s)) for s in item.spans], vectors, item.fields,
                    item.title, item.video_id, item.content_hash)
