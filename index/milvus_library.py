"""The distributed library: everything lives in a Milvus server (`pymilvus`), so service replicas pointed at one
server serve one library and keep no library state of their own.

Collections, named after `collection` (default "vmr"):
- `<name>_segments`: one row per time window: its vector, its video id and span, and the video's filterable
  fields copied in (duration, created, title, `facets` from `index.filters.facets`), so a filtered search grouped
  by video is one server call. Primary keys are allocated by Milvus (`auto_id`).
- `<name>_videos`: one row per video (path, title, duration, created, user fields as stored, content hash, the
  same filterable columns, and the words keyword search reads, with a BM25 function where the server has one).
- `<name>_texts`: the caption gallery. `<name>_meta`: settings (`user:<key>`), the vector dimension, the declared
  fields, the version.

User fields are JSON (`fields`, and `facets` for filtering) unless the library declares them (`declared`: name ->
text, number or bool, fixed when the collections are made): a declared field is also a typed scalar column
(`u_<name>`) of both collections, which filters compare directly, and every video must carry one value of its type.

Ids: video and text ids are allocated by the client, time-ordered so they are never reused: milliseconds since
2024 × 4096 + a random 12-bit start, below 2**53 (exact in JSON numbers); a process never repeats one, and one a
write is about to use is checked to be free first, so two replicas collide only if they pick the same id within the
few milliseconds between that check and the insert. The version is a fresh id written after every write: pages
made before a write by any replica are refused after it (the last writer's value wins; it differs from every
earlier one). A write is several calls (segments, then the video row, then the old segments' removal for an
upsert, then the version): a crash between them can leave segments without a video row, which searches skip.
All collections use Strong consistency: a replica reads every write acknowledged to any other.

What the server cannot do is done on the client or refused (`Unsupported`): grouping by video uses the server's
`group_by_field` (Milvus >= 2.4, milvus-lite) and falls back to fetching more segments and grouping here when the
server ignores it (2.3) or returns fewer groups than asked (milvus-lite groups an over-fetch); keyword search needs
BM25 (Milvus >= 2.5, milvus-lite) and is refused otherwise; listing sorts on the client.
"""
from __future__ import annotations

import json
import random
import re
import threading
import time

import numpy as np

from index.backend import Unsupported
from index.filters import Filter, check_declared, declared_column, facets, to_milvus
from index.records import (NewVideo, Segment, TextHit, TextRecord, VideoHit, VideoRecord, check_fields, check_title,
                           keyword_text, normalize, query_words)

INDEX_KINDS = {"flat": ("FLAT", {}), "hnsw": ("HNSW", {"M": 16, "efConstruction": 200}),
               "ivf": ("IVF_FLAT", {"nlist": 1024})}
SEARCH_PARAMS = {"flat": {}, "hnsw": {"ef": 256}, "ivf": {"nprobe": 64}}
MAX_TOPK = 16384  # Milvus's limit on one search's (offset +) limit
BATCH_ROWS = 2000
MAX_VARCHAR = 65535
EPOCH_MS = 1_704_067_200_000  # 2024-01-01
VIDEO_COLUMNS = ["video_id", "path", "title", "duration", "created", "fields", "content_hash"]
KEEP_ALIVE = {"grpc.keepalive_time_ms": 3_600_000}  # milvus-lite drops calls longer than its default allows


def _pymilvus():
    try:
        import pymilvus
    except ImportError:
        raise ImportError('the Milvus backend needs pymilvus: pip install -e ".[scale]"') from None
    return pymilvus


class _Ids:
    """Time-ordered ids below 2**53, never repeated by this process (see the module doc)."""

    def __init__(self):
        self._last = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> list[int]:
        with self._lock:
            start = max(self._last + 1, (int(time.time() * 1000) - EPOCH_MS) * 4096 + random.randrange(4096))
            self._last = start + n - 1
        return list(range(start, start + n))


class MilvusLibrary:
    """A `Library` in Milvus at `uri` (http://HOST:19530), under collections named after `collection`."""

    def __init__(self, uri: str, dim: int, collection: str = "vmr", token: str | None = None,
                 index_kind: str = "hnsw", timeout: float = 120.0, declared: dict[str, str] | None = None):
        if index_kind not in INDEX_KINDS:
            raise ValueError(f"Milvus index kind {index_kind!r}: use one of {', '.join(INDEX_KINDS)}")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,200}", collection):
            raise ValueError(f"collection name {collection!r}: letters, digits and _, not starting with a digit")
        self.pm = _pymilvus()
        self.dim, self.uri, self.index_kind, self.timeout = dim, uri, index_kind, timeout
        self.declared = dict(declared or {})
        self.client = self.pm.MilvusClient(uri=uri, token=token or "", timeout=timeout, dedicated=True,
                                           grpc_options=KEEP_ALIVE)
        self.server = self.client.get_server_version()
        self.lite = self.server.startswith("milvus_lite")
        release = tuple(int(x) for x in re.findall(r"\d+", self.server)[:2]) if not self.lite else (9, 9)
        self.native_group_by = release >= (2, 4)
        self.keywords = release >= (2, 5)  # BM25
        self.names = {part: f"{collection}_{part}" for part in ("segments", "videos", "texts", "meta")}
        self._ids = _Ids()
        self._open()

    # --- collections ---
    def _open(self) -> None:
        existing = set(self.client.list_collections())
        fresh = self.names["meta"] not in existing
        if fresh:
            self._create_all(existing)
        for name in self.names.values():
            self.client.load_collection(name)
        stored = self._meta("dim")
        if stored is None:
            self._put_meta("dim", str(self.dim))
        elif int(stored) != self.dim:
            raise ValueError(f"Milvus collection {self.names['meta']!r} holds {stored}-d vectors but the model makes "
                             f"{self.dim}-d ones; use another collection or the model it was built with")
        made = self._meta("declared")
        if made is None and (fresh or not self.declared):  # collections made before fields could be declared: none
            self._put_meta("declared", json.dumps(self.declared, sort_keys=True))
        elif json.loads(made or "{}") != self.declared:
            raise ValueError(f"the Milvus collections {self.names['meta']!r} were made with the declared fields "
                             f"{json.loads(made) or 'none'}, not {self.declared or 'none'}; columns cannot change "
                             f"after that: declare the same, or use another collection")

    def _create_all(self, existing: set[str]) -> None:
        DataType = self.pm.DataType
        kind, build = INDEX_KINDS[self.index_kind]

        def create(part: str, columns: list[tuple], vector: tuple[str, int], function=None) -> None:
            schema = self.pm.MilvusClient.create_schema(auto_id=part == "segments", enable_dynamic_field=False)
            for name, dtype, extra in columns:
                schema.add_field(name, dtype, **extra)
            params = self.client.prepare_index_params()
            if function is not None:
                schema.add_function(function)
                params.add_index(field_name="words_bm25", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
            elif vector[1] == self.dim:
                params.add_index(field_name=vector[0], index_type=kind, metric_type="IP", params={"params": build}
                                 if self.lite else build)
            else:
                params.add_index(field_name=vector[0], index_type="FLAT", metric_type="L2")
            if self.names[part] not in existing:
                self.client.create_collection(self.names[part], schema=schema, index_params=params,
                                              consistency_level="Strong")

        text = lambda n: (DataType.VARCHAR, {"max_length": n})  # noqa: E731
        kinds = {"text": text(1024), "number": (DataType.DOUBLE, {}), "bool": (DataType.BOOL, {})}
        filterable = [("duration", DataType.DOUBLE, {}), ("created", DataType.DOUBLE, {}),
                      ("title", *text(4 * 512)), ("facets", DataType.JSON, {}),
                      *[(declared_column(name), *kinds[kind]) for name, kind in sorted(self.declared.items())]]
        create("segments", [("id", DataType.INT64, {"is_primary": True}), ("video_id", DataType.INT64, {}),
                            ("seg_start", DataType.DOUBLE, {}), ("seg_end", DataType.DOUBLE, {}), *filterable,
                            ("vector", DataType.FLOAT_VECTOR, {"dim": self.dim})], ("vector", self.dim))
        videos = [("video_id", DataType.INT64, {"is_primary": True}), ("path", *text(MAX_VARCHAR)), *filterable,
                  ("fields", DataType.JSON, {}), ("content_hash", *text(256)), ("segments", DataType.INT64, {})]
        if self.keywords:
            function = self.pm.Function(name="words_bm25", function_type=self.pm.FunctionType.BM25,
                                        input_field_names=["words"], output_field_names=["words_bm25"])
            create("videos", videos + [("words", DataType.VARCHAR, {"max_length": MAX_VARCHAR, "enable_analyzer": True}),
                                       ("words_bm25", DataType.SPARSE_FLOAT_VECTOR, {})], ("words_bm25", 0), function)
        else:
            create("videos", videos + [("unused", DataType.FLOAT_VECTOR, {"dim": 2})], ("unused", 2))
        create("texts", [("id", DataType.INT64, {"is_primary": True}), ("text", *text(4 * 512)),
                         ("fields", DataType.JSON, {}), ("vector", DataType.FLOAT_VECTOR, {"dim": self.dim})],
               ("vector", self.dim))
        # the meta collection last: its presence says the others exist
        create("meta", [("key", DataType.VARCHAR, {"is_primary": True, "max_length": 512}),
                        ("value", *text(MAX_VARCHAR)), ("unused", DataType.FLOAT_VECTOR, {"dim": 2})], ("unused", 2))

    def _query(self, part: str, expr: str, fields: list[str]) -> list[dict]:
        """Every row passing `expr` (an iterator past Milvus's 16,384-row query window)."""
        name = self.names[part]
        rows = self.client.query(name, filter=expr, output_fields=fields, limit=MAX_TOPK)
        if len(rows) < MAX_TOPK:
            return rows
        it = self.client.query_iterator(name, batch_size=4096, filter=expr, output_fields=fields)
        rows = []
        try:
            while batch := it.next():
                rows += batch
        finally:
            it.close()
        return rows

    def _get(self, part: str, key: str, values: list, fields: list[str]) -> list[dict]:
        """Rows by primary key."""
        rows = []
        for i in range(0, len(values), 1000):
            chunk = values[i:i + 1000]
            rows += self.client.query(self.names[part], filter=f"{key} in {json.dumps(chunk)}", output_fields=fields,
                                      limit=len(chunk))
        return rows

    def _segments_of(self, video_ids: list[int], fields: list[str]) -> list[dict]:
        return self._query("segments", f"video_id in {json.dumps(video_ids)}", fields) if video_ids else []

    def _insert(self, part: str, rows: list[dict]) -> list[int]:
        ids = []
        for i in range(0, len(rows), BATCH_ROWS):
            ids += list(self.client.insert(self.names[part], rows[i:i + BATCH_ROWS])["ids"])
        return ids

    def _count(self, part: str) -> int:
        return int(self.client.query(self.names[part], filter="", output_fields=["count(*)"])[0]["count(*)"])

    # --- meta and version ---
    def get_meta(self, key: str) -> str | None:
        return self._meta("user:" + key)

    def _meta(self, key: str) -> str | None:
        rows = self.client.query(self.names["meta"], filter=f"key == {json.dumps(key)}", output_fields=["value"])
        return rows[0]["value"] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        self._put_meta("user:" + key, value)

    def _put_meta(self, key: str, value: str) -> None:
        self.client.upsert(self.names["meta"], [{"key": key, "value": value, "unused": [0.0, 0.0]}])

    def version(self) -> int:
        return int(self._meta("version") or 0)

    def _bump(self) -> None:
        self._put_meta("version", str(self._ids.take(1)[0]))

    def _free_ids(self, part: str, n: int) -> list[int]:
        key = "video_id" if part == "videos" else "id"
        while True:
            ids = self._ids.take(n)
            if not self._get(part, key, ids, [key]):
                return ids

    # --- videos ---
    def add_videos(self, items: list[NewVideo]) -> list[int]:
        checked = [self._checked(item) for item in items]
        replacing = [item.video_id for item in items if item.video_id is not None]
        present = {row["video_id"] for row in self._get("videos", "video_id", replacing, ["video_id"])}
        for vid in replacing:
            if vid not in present:
                raise KeyError(f"no video with id {vid} to replace")
        fresh = iter(self._free_ids("videos", len(items) - len(replacing)))
        old = [row["id"] for row in self._segments_of(replacing, ["id"])]
        now = time.time()
        ids, segments, videos = [], [], []
        for item, (fields, title, vectors) in zip(items, checked):
            vid = item.video_id if item.video_id is not None else next(fresh)
            common = {"duration": -1.0 if item.duration is None else float(item.duration), "created": now,
                      "title": title, "facets": facets(fields),
                      **{declared_column(name): fields[name] if kind != "number" else float(fields[name])
                         for name, kind in self.declared.items()}}
            segments += [{"video_id": vid, "seg_start": float(s), "seg_end": float(e), **common,
                          "vector": v.tolist()} for (s, e), v in zip(item.spans, vectors)]
            row = {"video_id": vid, "path": item.path, **common, "fields": fields,
                   "content_hash": item.content_hash or "", "segments": len(item.spans)}
            videos.append({**row, "words": _clip(title + " " + keyword_text(item.path, fields))} if self.keywords
                          else {**row, "unused": [0.0, 0.0]})
            ids.append(vid)
        self._insert("segments", segments)
        self.client.upsert(self.names["videos"], videos)
        if old:
            self.client.delete(self.names["segments"], ids=old)
        self._bump()
        return ids

    def _checked(self, item: NewVideo) -> tuple[dict, str, np.ndarray]:
        """(fields, title, unit vectors) of a video that can be stored, else ValueError (nothing is written before
        every item passes)."""
        vectors = normalize(np.atleast_2d(item.vectors))
        if len(item.spans) != len(vectors) or not len(item.spans):
            raise ValueError(f"need one vector per segment and at least one segment, got {len(item.spans)} spans "
                             f"and {len(vectors)} vectors")
        if vectors.shape[1] != self.dim:
            raise ValueError(f"expected {self.dim}-d vectors, got {vectors.shape[1]}")
        if len(item.path.encode("utf-8", "replace")) > MAX_VARCHAR:
            raise ValueError(f"a path longer than {MAX_VARCHAR} bytes")
        fields = check_fields(item.fields)
        check_declared(fields, self.declared)
        return fields, check_title(item.title), vectors

    def delete_video(self, video_id: int) -> VideoRecord | None:
        record = self.get_videos([video_id]).get(video_id)
        if record is None:
            return None
        self.client.delete(self.names["videos"], ids=[int(video_id)])
        self.client.delete(self.names["segments"], filter=f"video_id == {int(video_id)}")
        self._bump()
        return record

    def get_video(self, video_id: int) -> VideoRecord | None:
        record = self.get_videos([video_id]).get(video_id)
        if record is not None:
            rows = self._segments_of([int(video_id)], ["id", "seg_start", "seg_end"])
            record.segments = [Segment(r["id"], r["seg_start"], r["seg_end"])
                               for r in sorted(rows, key=lambda r: (r["seg_start"], r["id"]))]
        return record

    def get_videos(self, video_ids) -> dict[int, VideoRecord]:
        rows = self._get("videos", "video_id", [int(i) for i in video_ids], VIDEO_COLUMNS)
        return {r["video_id"]: _record(r) for r in rows}

    def list_videos(self, flt: Filter | None, offset: int, limit: int, sort: str = "video_id",
                    descending: bool = False) -> tuple[list[VideoRecord], int]:
        """Sorted here: Milvus queries have no order (a listing reads the sort key of every passing video)."""
        rows = self._query("videos", to_milvus(flt, self.declared) if flt else "",
                           ["video_id", sort] if sort != "video_id" else ["video_id"])

        def key(row):
            value = row[sort]
            if sort == "duration" and value < 0:
                return (0, 0.0, row["video_id"])
            return (1, value, row["video_id"])

        rows.sort(key=key, reverse=descending)
        page = [r["video_id"] for r in rows[offset:offset + limit]]
        records = self.get_videos(page)
        return [records[vid] for vid in page if vid in records], len(rows)

    def find_by_hash(self, content_hash: str) -> int | None:
        rows = self.client.query(self.names["videos"], filter=f"content_hash == {json.dumps(content_hash)}",
                                 output_fields=["video_id"])
        return min((r["video_id"] for r in rows), default=None)

    def video_segments(self, video_id: int) -> tuple[list[tuple[float, float]], np.ndarray]:
        rows = self._segments_of([int(video_id)], ["id", "seg_start", "seg_end", "vector"])
        rows.sort(key=lambda r: (r["seg_start"], r["id"]))
        vectors = np.array([r["vector"] for r in rows], np.float32).reshape(len(rows), self.dim)
        return [(r["seg_start"], r["seg_end"]) for r in rows], vectors

    def num_videos(self) -> int:
        return self._count("videos")

    def num_segments(self) -> int:
        return self._count("segments")

    # --- search ---
    def _search(self, part: str, queries: np.ndarray, limit: int, expr: str, fields: list[str], **extra):
        return self.client.search(self.names[part], data=queries.tolist(), limit=limit, filter=expr,
                                  output_fields=fields, anns_field="vector",
                                  search_params={"metric_type": "IP", "params": SEARCH_PARAMS[self.index_kind]},
                                  **extra)

    def search_videos(self, queries, k: int, flt: Filter | None = None, exclude: frozenset[int] = frozenset(),
                      min_score: float = -1.0) -> list[list[VideoHit]]:
        """The server groups by video where it can; queries left short of k videos (2.3 ignores grouping,
        milvus-lite groups an over-fetch) fetch growing numbers of segments and are grouped here, until k videos
        or the candidates (or Milvus's 16,384-hit limit) run out."""
        queries = normalize(np.atleast_2d(np.asarray(queries, np.float32)))
        parts = ([to_milvus(flt, self.declared)] if flt else []) + \
            ([f"video_id not in {sorted(exclude)}"] if exclude else [])
        expr = " and ".join(f"({p})" for p in parts)
        fields = ["video_id", "seg_start", "seg_end"]
        found: list[dict[int, tuple]] = [{} for _ in queries]
        pending = list(range(len(queries)))
        if self.native_group_by:
            grouped = self._search("segments", queries, min(k, MAX_TOPK), expr, fields, group_by_field="video_id",
                                   group_size=1)
            for q, hits in enumerate(grouped):
                found[q] = _best(hits, min_score)
            pending = [q for q in pending if len(found[q]) < k]
        fetch = min(max(4 * k, 32), MAX_TOPK)
        while pending:
            batch = self._search("segments", queries[pending], fetch, expr, fields)
            still = []
            for q, hits in zip(pending, batch):
                found[q] = _best(hits, min_score)
                exhausted = len(hits) < fetch or fetch >= MAX_TOPK or (len(hits) and hits[-1]["distance"] < min_score)
                if len(found[q]) < k and not exhausted:
                    still.append(q)
            pending, fetch = still, min(MAX_TOPK, fetch * 4)
        chosen = [sorted(best.items(), key=lambda item: (-item[1][0], item[0]))[:k] for best in found]
        records = self.get_videos({vid for hits in chosen for vid, _ in hits})
        return [[VideoHit(records[vid], score, sid, start, end) for vid, (score, sid, start, end) in hits
                 if vid in records] for hits in chosen]

    def keyword_search(self, text: str, limit: int, flt: Filter | None = None) -> list[tuple[int, float]]:
        if not self.keywords:
            raise Unsupported(f"this Milvus server ({self.server}) has no BM25 full-text search (Milvus 2.5 or "
                              "later has it); use mode vector")
        words = query_words(text.replace("_", " "))
        if not words:
            return []
        hits = self.client.search(self.names["videos"], data=[" ".join(words)], anns_field="words_bm25",
                                  limit=min(limit, MAX_TOPK), filter=to_milvus(flt, self.declared) if flt else "",
                                  output_fields=["video_id"], search_params={"metric_type": "BM25"})[0]
        # milvus-lite returns BM25 scores negated (best first); Milvus returns them as they are
        scored = [(h["entity"]["video_id"], abs(float(h["distance"]))) for h in hits]
        return sorted(((vid, s) for vid, s in scored if s > 0), key=lambda p: (-p[1], p[0]))

    # --- caption gallery ---
    def add_texts(self, texts: list[str], vectors, fields: list[dict] | None = None) -> list[int]:
        vectors = normalize(np.atleast_2d(vectors))
        if len(texts) != len(vectors):
            raise ValueError(f"got {len(texts)} texts for {len(vectors)} vectors")
        if vectors.shape[1] != self.dim:
            raise ValueError(f"expected {self.dim}-d vectors, got {vectors.shape[1]}")
        fields = [check_fields(f) for f in (fields or [{}] * len(texts))]
        texts = [check_title(t) for t in texts]
        ids = self._free_ids("texts", len(texts))
        self._insert("texts", [{"id": i, "text": t, "fields": f, "vector": v.tolist()}
                               for i, t, f, v in zip(ids, texts, fields, vectors)])
        return ids

    def num_texts(self) -> int:
        return self._count("texts")

    def list_texts(self, offset: int, limit: int) -> list[TextRecord]:
        """Captions in id order (Milvus queries come back in no set order: the ids are sorted here)."""
        ids = sorted(row["id"] for row in self._query("texts", "id >= 0", ["id"]))[offset:offset + limit]
        rows = {row["id"]: row for row in self._get("texts", "id", ids, ["id", "text", "fields"])}
        return [TextRecord(i, rows[i]["text"], rows[i]["fields"]) for i in ids if i in rows]

    def replace_text_vectors(self, ids: list[int], vectors) -> None:
        """New vectors for captions that keep their ids, texts and fields (KeyError naming an unknown id)."""
        vectors = normalize(np.atleast_2d(vectors))
        rows = {row["id"]: row for row in self._get("texts", "id", [int(i) for i in ids], ["id", "text", "fields"])}
        missing = [i for i in ids if int(i) not in rows]
        if missing:
            raise KeyError(f"no caption with id {missing[0]}")
        self.client.upsert(self.names["texts"], [{**rows[int(i)], "vector": v.tolist()} for i, v in zip(ids, vectors)])

    def search_texts(self, query, k: int = 10, min_score: float = -1.0) -> list[TextHit]:
        query = normalize(np.asarray(query, np.float32).reshape(1, -1))
        hits = self._search("texts", query, min(k, MAX_TOPK), "", ["text", "fields"])[0]
        return [TextHit(TextRecord(h["id"], h["entity"]["text"], h["entity"]["fields"]), float(h["distance"]))
                for h in hits if h["distance"] >= min_score]

    # --- lifecycle ---
    def checkpoint(self) -> bool:
        """Nothing to do: Milvus acknowledges a write once its log holds it."""
        return False

    def health(self) -> dict[str, str]:
        return {"backend": "milvus", "server": self.server, "collection": self.names["segments"],
                "kind": self.index_kind}

    def close(self) -> None:
        self.client.close()


def _best(hits, min_score: float) -> dict[int, tuple]:
    """video id -> (score, segment id, start, end) of its best hit at or above `min_score`."""
    best: dict[int, tuple] = {}
    for h in hits:
        score = float(h["distance"])
        vid = h["entity"]["video_id"]
        if score >= min_score and vid not in best:
            best[vid] = (score, h["id"], h["entity"]["seg_start"], h["entity"]["seg_end"])
    return best


def _record(row: dict) -> VideoRecord:
    duration = None if row["duration"] < 0 else row["duration"]
    return VideoRecord(row["video_id"], row["path"], duration, row["title"], row["fields"], row["created"],
                       row["content_hash"] or None)


def _clip(text: str) -> str:
    """`text` cut to what a VARCHAR column holds (bytes)."""
    data = text.encode("utf-8")
    return text if len(data) <= MAX_VARCHAR else data[:MAX_VARCHAR].decode("utf-8", "ignore")
