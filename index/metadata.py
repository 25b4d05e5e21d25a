"""SQLite metadata and vectors: the source of truth the FAISS caches are rebuilt from.

Every write is one transaction that also bumps its collection's generation number, so a FAISS checkpoint stamped
with generation g is known to be current exactly when the database still says g.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS videos (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL,
    duration REAL,
    fields TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS segments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    video_id INTEGER NOT NULL REFERENCES videos(id) ON DELETE CASCADE,
    start REAL NOT NULL,
    end REAL NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS segments_by_video ON segments(video_id);
CREATE TABLE IF NOT EXISTS texts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    text TEXT NOT NULL,
    fields TEXT NOT NULL DEFAULT '{}',
    vector BLOB NOT NULL
);
"""

COLLECTIONS = ("segments", "texts")


@dataclass
class Segment:
    id: int
    start: float
    end: float


@dataclass
class VideoRecord:
    id: int
    path: str
    duration: float | None
    fields: dict = field(default_factory=dict)
    created: float = 0.0
    segments: list[Segment] = field(default_factory=list)


@dataclass
class TextRecord:
    id: int
    text: str
    fields: dict = field(default_factory=dict)


class MetadataDB:
    """Thread-safe SQLite access (one connection, one lock, WAL, synchronous=FULL: a commit is durable)."""

    def __init__(self, path: str | Path, dim: int):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._conn.executescript(SCHEMA)
        stored = self._get_meta("dim")
        if stored is None:
            with self._tx() as c:
                c.execute("INSERT INTO meta VALUES ('dim', ?)", (str(dim),))
                for name in COLLECTIONS:
                    c.execute("INSERT OR IGNORE INTO meta VALUES (?, '0')", (f"generation:{name}",))
        elif int(stored) != dim:
            raise ValueError(f"{self.path} holds {stored}-d vectors but the model makes {dim}-d ones; "
                             "use another data dir or the model it was built with")
        self.dim = dim

    # --- plumbing ---
    def _tx(self):
        return _Transaction(self._conn, self._lock)

    def _get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def generation(self, collection: str) -> int:
        return int(self._get_meta(f"generation:{collection}") or 0)

    @staticmethod
    def _bump(c: sqlite3.Connection, collection: str) -> None:
        c.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key=?", (f"generation:{collection}",))

    def _blob(self, vector: np.ndarray) -> bytes:
        v = np.ascontiguousarray(vector, dtype=np.float32).reshape(-1)
        if v.shape[0] != self.dim:
            raise ValueError(f"expected a {self.dim}-d vector, got {v.shape[0]}")
        return v.tobytes()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # --- videos and their segments ---
    def put_video(self, path: str, duration: float | None, spans, vectors, fields: dict | None = None,
                  video_id: int | None = None) -> tuple[int, list[int], list[int]]:
        """Insert or replace a video with its segments. Returns (video id, new segment ids, removed segment ids)."""
        return self.put_videos([(path, duration, spans, vectors, fields, video_id)])[0]

    def put_videos(self, items) -> list[tuple[int, list[int], list[int]]]:
        """Many `put_video` argument tuples in one transaction (bulk loading)."""
        rows = []
        for path, duration, spans, vectors, fields, video_id in items:
            if len(spans) != len(vectors) or not len(spans):
                raise ValueError(f"need one vector per segment and at least one segment, got {len(spans)} spans "
                                 f"and {len(vectors)} vectors")
            rows.append((path, duration, spans, [self._blob(v) for v in vectors], fields, video_id))
        out = []
        with self._tx() as c:
            for path, duration, spans, blobs, fields, video_id in rows:
                removed = []
                if video_id is not None:
                    removed = [r[0] for r in c.execute("SELECT id FROM segments WHERE video_id=?", (video_id,))]
                    c.execute("DELETE FROM videos WHERE id=?", (video_id,))
                cur = c.execute("INSERT INTO videos (id, path, duration, fields, created) VALUES (?, ?, ?, ?, ?)",
                                (video_id, path, duration, json.dumps(fields or {}), time.time()))
                vid = cur.lastrowid if video_id is None else video_id
                new = [c.execute("INSERT INTO segments (video_id, start, end, vector) VALUES (?, ?, ?, ?)",
                                 (vid, float(start), float(end), blob)).lastrowid
                       for (start, end), blob in zip(spans, blobs)]
                out.append((vid, new, removed))
            self._bump(c, "segments")
        return out

    def delete_video(self, video_id: int) -> list[int] | None:
        """Delete a video; returns its segment ids, or None when there is no such video."""
        with self._tx() as c:
            if c.execute("SELECT 1 FROM videos WHERE id=?", (video_id,)).fetchone() is None:
                return None
            seg_ids = [r[0] for r in c.execute("SELECT id FROM segments WHERE video_id=?", (video_id,))]
            c.execute("DELETE FROM videos WHERE id=?", (video_id,))
            self._bump(c, "segments")
        return seg_ids

    def get_videos(self, video_ids, with_segments: bool = True) -> dict[int, VideoRecord]:
        ids = [int(i) for i in video_ids]
        out: dict[int, VideoRecord] = {}
        with self._lock:
            for chunk in _chunks(ids):
                marks = ",".join("?" * len(chunk))
                for vid, path, dur, fields, created in self._conn.execute(
                        f"SELECT id, path, duration, fields, created FROM videos WHERE id IN ({marks})", chunk):
                    out[vid] = VideoRecord(vid, path, dur, json.loads(fields), created)
                if not with_segments:
                    continue
                for sid, vid, start, end in self._conn.execute(
                        f"SELECT id, video_id, start, end FROM segments WHERE video_id IN ({marks}) ORDER BY start",
                        chunk):
                    out[vid].segments.append(Segment(sid, start, end))
        return out

    def count_videos(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM videos").fetchone()[0]

    def segment_owners(self, segment_ids) -> dict[int, tuple[int, float, float]]:
        """segment id -> (video id, start, end)."""
        ids = [int(i) for i in segment_ids]
        out = {}
        with self._lock:
            for chunk in _chunks(ids):
                marks = ",".join("?" * len(chunk))
                for sid, vid, start, end in self._conn.execute(
                        f"SELECT id, video_id, start, end FROM segments WHERE id IN ({marks})", chunk):
                    out[sid] = (vid, start, end)
        return out

    def video_segment_vectors(self, video_id: int) -> np.ndarray:
        with self._lock:
            rows = self._conn.execute("SELECT vector FROM segments WHERE video_id=? ORDER BY start",
                                      (video_id,)).fetchall()
        return np.stack([np.frombuffer(r[0], np.float32) for r in rows]) if rows else np.zeros((0, self.dim),
                                                                                               np.float32)

    # --- caption gallery ---
    def add_texts(self, texts: list[str], vectors, fields: list[dict] | None = None) -> list[int]:
        if len(texts) != len(vectors):
            raise ValueError(f"got {len(texts)} texts for {len(vectors)} vectors")
        fields = fields or [{}] * len(texts)
        blobs = [self._blob(v) for v in vectors]
        with self._tx() as c:
            ids = [c.execute("INSERT INTO texts (text, fields, vector) VALUES (?, ?, ?)",
                             (t, json.dumps(f), b)).lastrowid for t, f, b in zip(texts, fields, blobs)]
            self._bump(c, "texts")
        return ids

    def get_texts(self, text_ids) -> dict[int, TextRecord]:
        ids = [int(i) for i in text_ids]
        out = {}
        with self._lock:
            for chunk in _chunks(ids):
                marks = ",".join("?" * len(chunk))
                for tid, text, fields in self._conn.execute(
                        f"SELECT id, text, fields FROM texts WHERE id IN ({marks})", chunk):
                    out[tid] = TextRecord(tid, text, json.loads(fields))
        return out

    def count_texts(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM texts").fetchone()[0]

    # --- what the FAISS caches are rebuilt from ---
    def ids(self, collection: str) -> np.ndarray:
        _check_collection(collection)
        with self._lock:
            rows = self._conn.execute(f"SELECT id FROM {collection}").fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def vectors(self, collection: str, ids=None) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of `collection`, all rows or only `ids`."""
        _check_collection(collection)
        with self._lock:
            if ids is None:
                rows = self._conn.execute(f"SELECT id, vector FROM {collection}").fetchall()
            else:
                rows = []
                for chunk in _chunks([int(i) for i in ids]):
                    marks = ",".join("?" * len(chunk))
                    rows += self._conn.execute(f"SELECT id, vector FROM {collection} WHERE id IN ({marks})",
                                               chunk).fetchall()
        out_ids = np.array([r[0] for r in rows], dtype=np.int64)
        vecs = np.frombuffer(b"".join(r[1] for r in rows), np.float32).reshape(len(rows), self.dim)
        return out_ids, vecs


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT under the connection lock; ROLLBACK on any error."""

    def __init__(self, conn: sqlite3.Connection, lock: threading.RLock):
        self._conn, self._lock = conn, lock

    def __enter__(self) -> sqlite3.Connection:
        self._lock.acquire()
        self._conn.execute("BEGIN IMMEDIATE")
        return self._conn

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self._conn.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self._lock.release()


def _check_collection(name: str) -> None:
    if name not in COLLECTIONS:
        raise ValueError(f"unknown collection {name!r}; expected one of {COLLECTIONS}")


def _chunks(ids: list[int], size: int = 500):
    for i in range(0, len(ids), size):
        yield ids[i:i + size]
