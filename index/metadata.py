"""SQLite: the embedded library's source of truth (videos, their segments and vectors, captions, keywords), which
the FAISS caches are rebuilt from.

Every write is one transaction that also bumps its collection's generation number, so a FAISS checkpoint stamped
with generation g is known to be current exactly when the database still says g. Video ids are never reused
(AUTOINCREMENT), so a client holding an old id never gets another video.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np

from index.filters import BUILTIN, Filter, to_sql
from index.records import (NewVideo, Segment, TextRecord, VideoRecord, check_fields, check_title, keyword_text,
                           query_words)

SCHEMA_VERSION = 2
_VIDEOS_TABLE = """CREATE TABLE IF NOT EXISTS videos (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL,
    title TEXT NOT NULL DEFAULT '',
    duration REAL,
    fields TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL,
    content_hash TEXT
)"""
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
""" + _VIDEOS_TABLE + """;
CREATE INDEX IF NOT EXISTS videos_by_hash ON videos(content_hash);
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
CREATE VIRTUAL TABLE IF NOT EXISTS video_words USING fts5(title, words, tokenize = 'unicode61');
"""

COLLECTIONS = ("segments", "texts")


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
        self._migrate()
        stored = self.get_meta("dim")
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

    def _migrate(self) -> None:
        """Schema 1 (no title, no content hash, reusable video ids, no keywords) is rebuilt as schema 2."""
        with self._lock:
            tables = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            row = self._conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone() if "meta" in tables \
                else None
            if "videos" in tables and row is None:
                self._conn.execute("PRAGMA foreign_keys=OFF")  # segments keep pointing at "videos" by name
                with self._tx() as c:
                    c.execute(_VIDEOS_TABLE.replace("videos (", "videos_v2 (", 1))
                    c.execute("INSERT INTO videos_v2 (id, path, duration, fields, created) "
                              "SELECT id, path, duration, fields, created FROM videos")
                    c.execute("DROP TABLE videos")
                    c.execute("ALTER TABLE videos_v2 RENAME TO videos")
                    for statement in SCHEMA.split(";"):
                        if statement.strip():
                            c.execute(statement)
                    for vid, path, fields in c.execute("SELECT id, path, fields FROM videos").fetchall():
                        c.execute("INSERT INTO video_words (rowid, title, words) VALUES (?, ?, ?)",
                                  (vid, "", keyword_text(path, json.loads(fields))))
                self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.executescript(SCHEMA)
            self._conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as c:
            c.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def generation(self, collection: str) -> int:
        return int(self.get_meta(f"generation:{collection}") or 0)

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
    def put_videos(self, items: list[NewVideo]) -> list[tuple[int, list[int], list[int]]]:
        """Insert videos, or replace existing ones (`video_id`), with their segments, in one transaction.
        Returns (video id, new segment ids, removed segment ids) per item."""
        rows = []
        for item in items:
            if len(item.spans) != len(item.vectors) or not len(item.spans):
                raise ValueError(f"need one vector per segment and at least one segment, got {len(item.spans)} "
                                 f"spans and {len(item.vectors)} vectors")
            fields = check_fields(item.fields)
            title = check_title(item.title)
            rows.append((item, json.dumps(fields, ensure_ascii=False), title, [self._blob(v) for v in item.vectors]))
        out = []
        with self._tx() as c:
            for item, fields, title, blobs in rows:
                removed = []
                if item.video_id is not None:
                    if c.execute("SELECT 1 FROM videos WHERE id=?", (item.video_id,)).fetchone() is None:
                        raise KeyError(f"no video with id {item.video_id} to replace")
                    removed = [r[0] for r in c.execute("SELECT id FROM segments WHERE video_id=?", (item.video_id,))]
                    c.execute("DELETE FROM segments WHERE video_id=?", (item.video_id,))
                    c.execute("UPDATE videos SET path=?, title=?, duration=?, fields=?, created=?, content_hash=? "
                              "WHERE id=?", (item.path, title, item.duration, fields, time.time(), item.content_hash,
                                             item.video_id))
                    c.execute("DELETE FROM video_words WHERE rowid=?", (item.video_id,))
                    vid = item.video_id
                else:
                    vid = c.execute("INSERT INTO videos (path, title, duration, fields, created, content_hash) "
                                    "VALUES (?, ?, ?, ?, ?, ?)", (item.path, title, item.duration, fields,
                                                                  time.time(), item.content_hash)).lastrowid
                c.execute("INSERT INTO video_words (rowid, title, words) VALUES (?, ?, ?)",
                          (vid, title, keyword_text(item.path, item.fields or {})))
                new = [c.execute("INSERT INTO segments (video_id, start, end, vector) VALUES (?, ?, ?, ?)",
                                 (vid, float(start), float(end), blob)).lastrowid
                       for (start, end), blob in zip(item.spans, blobs)]
                out.append((vid, new, removed))
            self._bump(c, "segments")
        return out

    def delete_video(self, video_id: int) -> tuple[VideoRecord, list[int]] | None:
        """Delete a video; returns its record and segment ids, or None when there is no such video."""
        with self._tx() as c:
            record = self.get_videos([video_id], with_segments=False).get(video_id)
            if record is None:
                return None
            seg_ids = [r[0] for r in c.execute("SELECT id FROM segments WHERE video_id=?", (video_id,))]
            c.execute("DELETE FROM videos WHERE id=?", (video_id,))
            c.execute("DELETE FROM video_words WHERE rowid=?", (video_id,))
            self._bump(c, "segments")
        return record, seg_ids

    def get_videos(self, video_ids, with_segments: bool = True) -> dict[int, VideoRecord]:
        ids = [int(i) for i in video_ids]
        out: dict[int, VideoRecord] = {}
        with self._lock:
            for chunk in _chunks(ids):
                marks = ",".join("?" * len(chunk))
                for row in self._conn.execute(f"SELECT {_VIDEO_COLUMNS} FROM videos WHERE id IN ({marks})", chunk):
                    out[row[0]] = _record(row)
                if not with_segments:
                    continue
                for sid, vid, start, end in self._conn.execute(
                        f"SELECT id, video_id, start, end FROM segments WHERE video_id IN ({marks}) ORDER BY start",
                        chunk):
                    out[vid].segments.append(Segment(sid, start, end))
        return out

    def list_videos(self, flt: Filter | None, offset: int, limit: int, sort: str = "video_id",
                    descending: bool = False) -> tuple[list[VideoRecord], int]:
        """One page of videos passing `flt`, in `sort` order (ties by id), and how many pass in all."""
        where, params = to_sql(flt) if flt else ("1", [])
        order = f"{BUILTIN[sort]} {'DESC' if descending else 'ASC'}, id {'DESC' if descending else 'ASC'}"
        with self._lock:
            total = self._conn.execute(f"SELECT COUNT(*) FROM videos WHERE {where}", params).fetchone()[0]
            rows = self._conn.execute(f"SELECT {_VIDEO_COLUMNS} FROM videos WHERE {where} ORDER BY {order} "
                                      "LIMIT ? OFFSET ?", params + [limit, offset]).fetchall()
        return [_record(r) for r in rows], total

    def filter_video_ids(self, flt: Filter) -> np.ndarray:
        where, params = to_sql(flt)
        with self._lock:
            rows = self._conn.execute(f"SELECT id FROM videos WHERE {where}", params).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def find_by_hash(self, content_hash: str) -> int | None:
        with self._lock:
            row = self._conn.execute("SELECT id FROM videos WHERE content_hash=? ORDER BY id LIMIT 1",
                                     (content_hash,)).fetchone()
        return row[0] if row else None

    def count_videos(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM videos").fetchone()[0]

    def count_segments(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM segments").fetchone()[0]

    def segment_table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(segment ids ascending, their video ids, starts, ends) of the whole library."""
        with self._lock:
            rows = self._conn.execute("SELECT id, video_id, start, end FROM segments ORDER BY id").fetchall()
        table = np.array(rows, dtype=np.float64).reshape(-1, 4)
        return table[:, 0].astype(np.int64), table[:, 1].astype(np.int64), table[:, 2], table[:, 3]

    def video_segments(self, video_id: int) -> tuple[list[tuple[float, float]], np.ndarray]:
        """A video's windows in time order and their vectors ((0, dim) for an unknown id)."""
        with self._lock:
            rows = self._conn.execute("SELECT start, end, vector FROM segments WHERE video_id=? ORDER BY start",
                                      (video_id,)).fetchall()
        vectors = np.frombuffer(b"".join(r[2] for r in rows), np.float32).reshape(len(rows), self.dim)
        return [(r[0], r[1]) for r in rows], vectors

    # --- keywords ---
    def keyword_search(self, text: str, limit: int, flt: Filter | None = None) -> list[tuple[int, float]]:
        """Videos whose title, file name or text fields hold any word of `text`, by BM25 (higher is better)."""
        words = query_words(text)
        if not words:
            return []
        query = " OR ".join(f'"{w}"' for w in words)
        where, params = to_sql(flt) if flt else ("1", [])
        with self._lock:
            rows = self._conn.execute(
                "SELECT video_words.rowid, bm25(video_words) AS rank FROM video_words JOIN videos ON "
                f"videos.id = video_words.rowid WHERE video_words MATCH ? AND {where} ORDER BY rank, "
                "video_words.rowid LIMIT ?", [query] + params + [limit]).fetchall()
        return [(vid, -float(rank)) for vid, rank in rows]

    # --- caption gallery ---
    def add_texts(self, texts: list[str], vectors, fields: list[dict] | None = None) -> list[int]:
        if len(texts) != len(vectors):
            raise ValueError(f"got {len(texts)} texts for {len(vectors)} vectors")
        fields = [check_fields(f) for f in (fields or [{}] * len(texts))]
        for text in texts:
            check_title(text)
        blobs = [self._blob(v) for v in vectors]
        with self._tx() as c:
            ids = [c.execute("INSERT INTO texts (text, fields, vector) VALUES (?, ?, ?)",
                             (t, json.dumps(f, ensure_ascii=False), b)).lastrowid
                   for t, f, b in zip(texts, fields, blobs)]
            self._bump(c, "texts")
        return ids

    def replace_text_vectors(self, ids: list[int], vectors) -> None:
        """New vectors for stored captions; the generation they were replaced at is recorded, so that a FAISS
        checkpoint older than it (which holds the same ids with the old vectors) is rebuilt, not caught up."""
        if len(ids) != len(vectors):
            raise ValueError(f"got {len(ids)} ids for {len(vectors)} vectors")
        blobs = [self._blob(v) for v in vectors]
        with self._tx() as c:
            for tid, blob in zip(ids, blobs):
                if c.execute("UPDATE texts SET vector=? WHERE id=?", (blob, int(tid))).rowcount != 1:
                    raise KeyError(f"no text with id {tid}")
            self._bump(c, "texts")
            c.execute("INSERT OR REPLACE INTO meta VALUES ('replaced:texts', (SELECT value FROM meta WHERE "
                      "key='generation:texts'))")

    def replaced_at(self, collection: str) -> int:
        """The generation at which vectors of `collection` were last replaced in place (0: never)."""
        return int(self.get_meta(f"replaced:{collection}") or 0)

    def list_texts(self, offset: int, limit: int) -> list[TextRecord]:
        with self._lock:
            rows = self._conn.execute("SELECT id, text, fields FROM texts ORDER BY id LIMIT ? OFFSET ?",
                                      (limit, offset)).fetchall()
        return [TextRecord(tid, text, json.loads(fields)) for tid, text, fields in rows]

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


_VIDEO_COLUMNS = "id, path, title, duration, fields, created, content_hash"


def _record(row) -> VideoRecord:
    vid, path, title, duration, fields, created, content_hash = row
    return VideoRecord(vid, path, duration, title, json.loads(fields), created, content_hash)


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
