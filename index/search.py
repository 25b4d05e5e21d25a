"""Searching a library, the same over every backend: videos (or moments) for a query vector, keywords or both,
filtered inside the backend's search, in pages, with the moments where each video matches, and "A then B".

Rankings (ties broken by video id, so pages are stable while the library does not change):
- vector: each video by its best window's cosine with the query (its best moment's score).
- keyword: BM25 over titles, file names and text fields (`Library.keyword_search`).
- hybrid: reciprocal rank fusion of the vector and keyword rankings, each cut at `FUSION_DEPTH`:
  score = sum over the two lists of 1 / (RRF_K + rank), rank counted from 1.
- then: videos holding a moment of the query followed, within `max_gap` seconds, by a moment of `then`
  (`index.moments.ordered_pair`), among the top `FUSION_DEPTH` videos of either query; by the pair's mean score.
- sort by a field: the top `FUSION_DEPTH` by score, ordered by that field instead.
- rescored (a re-rank by a model above this layer, e.g. the matching head): the top `rescore_depth` of the
  ranking re-ordered by `rescore`'s scores (those it cannot score, None, after the scored ones in their order), the
  rest as they were.
Every ranking is computed over a fixed depth, never one that depends on the page, so consecutive pages never
overlap and together equal one request for as many results.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from index.backend import Library
from index.filters import SORT_FIELDS as FIELD_SORTS, Filter
from index.moments import Moment, moments, ordered_pair
from index.records import VideoHit, VideoRecord

RRF_K = 60
FUSION_DEPTH = 200
MAX_MOMENT_VIDEOS = 2000

Mode = Literal["vector", "keyword", "hybrid"]
SORT_FIELDS = ("score", *FIELD_SORTS)


@dataclass
class Query:
    vector: np.ndarray  # the query's unit vector (a text's, or an example's)
    text: str | None = None  # the words keyword and hybrid search read
    then: np.ndarray | None = None  # "A then B": the second event's vector
    max_gap: float = 10.0
    mode: Mode = "vector"
    flt: Filter | None = None
    exclude: frozenset[int] = frozenset()
    min_score: float = -1.0
    group_by: Literal["video", "moment"] = "video"
    moments_per_video: int = 3
    sort: str = "score"
    descending: bool = True
    offset: int = 0
    k: int = 10
    rescore: Callable[[list["VideoResult"]], list[float | None]] | None = None  # new scores for the top results
    rescore_depth: int = 16


@dataclass
class VideoResult:
    video: VideoRecord
    score: float
    moments: list[Moment] = field(default_factory=list)
    moment_vectors: list[np.ndarray] = field(default_factory=list)  # the best window's vector of each moment
    rescored: float | None = None  # the re-rank's score, when the query was rescored


@dataclass
class MomentResult:
    video: VideoRecord
    moment: Moment
    vector: np.ndarray


@dataclass
class Page:
    results: list[VideoResult] | list[MomentResult]
    has_more: bool
    version: int


def search(library: Library, queries: list[Query]) -> list[Page]:
    """Pages for many queries; the plain vector rankings of queries that share their settings run as one batched
    backend search."""
    version = library.version()
    first: dict[int, list[VideoHit]] = {}
    groups: dict[tuple, list[int]] = {}
    for i, q in enumerate(queries):
        if q.mode == "vector" and q.then is None and q.sort == "score" and q.group_by == "video":
            key = (_need(q), q.flt.key() if q.flt else None, q.exclude, q.min_score)
            groups.setdefault(key, []).append(i)
    for (need, _, exclude, min_score), members in groups.items():
        flt = queries[members[0]].flt
        hits = library.search_videos(np.stack([queries[i].vector for i in members]), need, flt, exclude, min_score)
        first.update(zip(members, hits))
    return [_page(library, q, first.get(i), version) for i, q in enumerate(queries)]


def _page(library: Library, q: Query, hits: list[VideoHit] | None, version: int) -> Page:
    if q.group_by == "moment":
        return _moment_page(library, q, version)
    if q.then is not None:
        return _ordered_page(library, q, version)
    ranked = _ranked(library, q, hits)
    head = 0
    if q.rescore is not None:
        head = min(q.rescore_depth, len(ranked))
        top = [_with_moments(library, q, record, score) for record, score in ranked[:head]]
        for result, score in zip(top, q.rescore(top)):
            result.rescored = score
        top.sort(key=lambda r: (r.rescored is None, -(r.rescored or 0.0)))  # stable: unscored keep their order
    results = [top[i] if i < head else _with_moments(library, q, *ranked[i])
               for i in range(q.offset, min(q.offset + q.k, len(ranked)))]
    return Page(results, len(ranked) > q.offset + q.k, version)


def _with_moments(library: Library, q: Query, record: VideoRecord, score: float) -> VideoResult:
    spans, vectors = library.video_segments(record.id)
    found = moments(spans, vectors @ q.vector, q.moments_per_video, q.min_score) if len(spans) else []
    return VideoResult(record, score, found, [vectors[m.window] for m in found])


def _need(q: Query) -> int:
    """How much of the ranking a page needs: through its last result, one more (is there a next page?), and the
    whole rescored top, which must be the same for every page."""
    return max(q.offset + q.k, q.rescore_depth if q.rescore is not None else 0) + 1


def _ranked(library: Library, q: Query, hits: list[VideoHit] | None) -> list[tuple[VideoRecord, float]]:
    """(video, score) best first; long enough to hold the page and tell whether another follows."""
    need = _need(q)
    depth = FUSION_DEPTH if q.sort != "score" else need
    if q.mode == "vector":
        hits = hits if hits is not None else _vector(library, q, depth)
        ranked = [(h.video, h.score) for h in hits]
    elif q.mode == "keyword":
        ranked = _records(library, _keywords(library, q, max(depth, need)))
    else:
        vector = [(h.video.id, h.score) for h in _vector(library, q, FUSION_DEPTH)]
        fused = fuse([vector, _keywords(library, q, FUSION_DEPTH)])
        ranked = _records(library, fused[:max(depth, need)])
    if q.sort != "score":
        ranked = ranked[:FUSION_DEPTH]
        ranked.sort(key=lambda item: (_sort_value(item[0], q.sort), item[0].id), reverse=q.descending)
    return ranked


def _vector(library: Library, q: Query, depth: int) -> list[VideoHit]:
    return library.search_videos(q.vector[None], depth, q.flt, q.exclude, q.min_score)[0]


def _keywords(library: Library, q: Query, depth: int) -> list[tuple[int, float]]:
    found = library.keyword_search(q.text or "", depth + len(q.exclude), q.flt)
    return [(vid, score) for vid, score in found if vid not in q.exclude][:depth]


def _records(library: Library, ranked: list[tuple[int, float]]) -> list[tuple[VideoRecord, float]]:
    records = library.get_videos([vid for vid, _ in ranked])
    return [(records[vid], score) for vid, score in ranked if vid in records]


def fuse(rankings: list[list[tuple[int, float]]]) -> list[tuple[int, float]]:
    """Reciprocal rank fusion: each id scores sum(1 / (RRF_K + rank)) over the rankings it appears in."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, (vid, _) in enumerate(ranking, start=1):
            fused[vid] = fused.get(vid, 0.0) + 1.0 / (RRF_K + rank)
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))


def _sort_value(record: VideoRecord, name: str):
    value = record.id if name == "video_id" else getattr(record, name)
    return (value is not None, value if value is not None else 0)


def _ordered_page(library: Library, q: Query, version: int) -> Page:
    """Videos ranked by their best in-order pair of moments (first `vector`, then `then`)."""
    candidates = {h.video.id: h.video for vec in (q.vector, q.then)
                  for h in library.search_videos(vec[None], FUSION_DEPTH, q.flt, q.exclude, -1.0)[0]}
    scored = []
    for vid, record in candidates.items():
        spans, vectors = library.video_segments(vid)
        pair = ordered_pair(spans, vectors @ q.vector, vectors @ q.then, q.max_gap) if len(spans) else None
        if pair is not None and pair[2] >= q.min_score:
            first, then, score = pair
            scored.append(VideoResult(record, score, [first, then], [vectors[first.window], vectors[then.window]]))
    scored.sort(key=lambda r: (-r.score, r.video.id))
    return Page(scored[q.offset:q.offset + q.k], len(scored) > q.offset + q.k, version)


def _moment_page(library: Library, q: Query, version: int) -> Page:
    """Moments across videos, best first. Videos are read in score order until the next video's best score (an
    upper bound on every moment of the videos not read yet) cannot reach the page's last moment."""
    need = q.offset + q.k + 1
    depth = max(need, 32)
    while True:
        hits = library.search_videos(q.vector[None], depth, q.flt, q.exclude, q.min_score)[0]
        found: list[MomentResult] = []
        for hit in hits:
            spans, vectors = library.video_segments(hit.video.id)
            found += [MomentResult(hit.video, m, vectors[m.window])
                      for m in moments(spans, vectors @ q.vector, q.moments_per_video, q.min_score)]
        found.sort(key=lambda r: (-r.moment.score, r.video.id, r.moment.start))
        complete = len(hits) < depth or depth >= MAX_MOMENT_VIDEOS or \
            (len(found) >= need and found[need - 1].moment.score >= hits[-1].score)
        if complete:
            return Page(found[q.offset:q.offset + q.k], len(found) > q.offset + q.k, version)
        depth = min(MAX_MOMENT_VIDEOS, depth * 2)
