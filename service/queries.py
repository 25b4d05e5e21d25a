"""Answering searches: requests checked against the limits and turned into index queries, text queries
micro-batched through the encoder and the library, the matching-head re-rank, and query by example (an uploaded
image or clip, or an indexed video's moment)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from encoders.video_text import Embedder, VideoEmbedding, pool_segments
from index import Library, VideoRecord, parse_filter
from index.search import SORT_FIELDS, Page, Query, VideoResult, search
from media import VideoDecodeError
from service import pages, window_tokens
from service.config import ServiceConfig
from service.errors import BadRequest, NotFound, ServiceError, Unprocessable
from service.query_cache import QueryVectorCache
from service.schemas import ExampleMoment, SearchOptions, SearchRequest
from service.uploads import probe


@dataclass
class PlannedSearch:
    """A checked request: the texts still to embed (or the example's vector), and the index query around them."""

    query: Query  # its vector (and then) are filled in once the texts are embedded
    text: str | None = None
    then_text: str | None = None
    digest: str = ""
    rerank: bool = False  # re-order the top results with the matching head


def check_text(config: ServiceConfig, text: str, name: str = "query") -> None:
    """A text to embed (a query, a caption): not blank, within the length limit, and valid Unicode (the tokenizer
    and the library take nothing else)."""
    if len(text) > config.max_query_chars:
        raise Unprocessable(f"{name} is {len(text)} characters long; the limit is {config.max_query_chars}")
    if not text.strip():
        raise Unprocessable(f"{name} is blank")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise Unprocessable(f"{name} is not valid Unicode (it holds a lone surrogate)") from None


def plan(config: ServiceConfig, library: Library, req: SearchOptions, example_vector: np.ndarray | None = None,
         example_key: str = "") -> PlannedSearch:
    """Check a request against the limits and decode its page token. Text search (SearchRequest) embeds its texts
    later, in a batch; a search by example brings its vector."""
    if req.k > config.max_k:
        raise Unprocessable(f"k must be between 1 and {config.max_k}, got {req.k}")
    if req.moments_per_video > config.max_moments_per_video:
        raise Unprocessable(f"moments_per_video must be between 1 and {config.max_moments_per_video}")
    descending = req.sort == "score" or req.sort.startswith("-")
    sort = req.sort.lstrip("-")
    if sort not in SORT_FIELDS:
        raise Unprocessable(f"sort must be one of {', '.join(SORT_FIELDS)} (a leading - for descending), "
                            f"got {req.sort!r}")
    try:
        flt = parse_filter(req.filters)
    except ValueError as err:
        raise Unprocessable(str(err)) from None
    text = then = None
    mode, max_gap = "vector", 10.0
    if isinstance(req, SearchRequest):
        mode, max_gap, text, then = req.mode, float(req.max_gap), req.query, req.then
        if (req.query is None) == (req.example is None):
            raise Unprocessable("give exactly one of: query (a text) or example (an indexed video's moment)")
        for name, value in (("query", req.query), ("then", req.then)):
            if value is not None:
                check_text(config, value, name)
        if req.then is not None and (req.query is None or mode != "vector" or req.group_by != "video"):
            raise Unprocessable("then needs a text query, mode vector and group_by video")
        if mode != "vector" and not library.keywords:
            raise BadRequest("this library's index has no keyword search (Milvus before 2.5 has no BM25): use mode "
                             "vector")
        if req.example is not None and mode != "vector":
            raise Unprocessable("an example searches by vector: use mode vector")
        if req.rerank and (req.query is None or req.then is not None or req.group_by != "video" or sort != "score"):
            raise Unprocessable("rerank needs a text query without then, group_by video and sort score")
    exclude = frozenset()
    if isinstance(req, SearchRequest) and req.example is not None:
        example_vector = example_moment_vector(library, req.example)
        exclude = frozenset({req.example.video_id})
        example_key = req.example.model_dump_json()
    digest = pages.request_digest({"query": text, "then": then, "max_gap": max_gap, "mode": mode,
                                   "filters": flt.key() if flt else None, "sort": req.sort, "group_by": req.group_by,
                                   "moments": req.moments_per_video, "min_score": req.min_score,
                                   "example": example_key, "rerank": getattr(req, "rerank", False)})
    offset = pages.decode(req.page_token, library.version(), digest, config.max_page_depth) \
        if req.page_token else 0
    query = Query(vector=example_vector, text=text, max_gap=max_gap, mode=mode, flt=flt, exclude=exclude,
                  min_score=float(req.min_score), group_by=req.group_by, moments_per_video=req.moments_per_video,
                  sort=sort, descending=descending, offset=offset, k=req.k, rescore_depth=config.rerank_candidates)
    return PlannedSearch(query, text, then, digest, rerank=getattr(req, "rerank", False))


def run_searches(embedder: Embedder, library: Library, config: ServiceConfig, cache: QueryVectorCache,
                 planned: list[PlannedSearch]) -> list[tuple[Page, Query]]:
    """One encoder forward for every text of a micro-batch not in the cache, then one batched library search; each
    page with the query it answers (its vectors filled in)."""
    texts = sorted({t for p in planned for t in (p.text, p.then_text) if t is not None})
    vectors = dict(zip(texts, cache.embed(embedder, texts, config.dynamic_padding))) if texts else {}
    queries = [replace(p.query, vector=p.query.vector if p.text is None else vectors[p.text],
                       then=vectors[p.then_text] if p.then_text is not None else None,
                       rescore=matching_rescore(embedder, library, config, p.text) if p.rerank else None)
               for p in planned]
    return list(zip(search(library, queries), queries))


def next_page_token(planned: PlannedSearch, page: Page, config: ServiceConfig) -> str | None:
    offset = planned.query.offset + planned.query.k
    if not page.has_more or offset > config.max_page_depth:
        return None
    return pages.encode(offset, page.version, planned.digest)


def example_moment_vector(library: Library, example: ExampleMoment) -> np.ndarray:
    """The pooled vector of an indexed video's windows that overlap [start, end] (all of them by default)."""
    spans, vectors = library.video_segments(example.video_id)
    if not spans:
        raise NotFound(f"no video with id {example.video_id}")
    start = float(example.start) if example.start is not None else spans[0][0]
    end = float(example.end) if example.end is not None else spans[-1][1]
    if end <= start:
        raise Unprocessable(f"example end ({end}) must be after its start ({start})")
    inside = [i for i, (s, e) in enumerate(spans) if s < end and e > start]
    if not inside:
        raise Unprocessable(f"video {example.video_id} has no indexed window between {start} and {end} s "
                            f"(it is {spans[-1][1]:.1f} s long)")
    return pool_segments(vectors[inside])


def matching_rescore(embedder: Embedder, library: Library, config: ServiceConfig,
                     text: str) -> Callable[[list[VideoResult]], list[float | None]]:
    """Re-rank scores for the top results: each one's best-moment cosine + `rerank_weight` x the matching head's
    logit on that moment's best window, read from the stored window tokens (decoded again only for videos
    ingested without them; None for those whose file cannot be decoded now). Tuned and measured on held-out
    synthetic splits by benchmarks/bench_rerank.py."""

    def rescore(results: list[VideoResult]) -> list[float]:
        tokens, usable = [], []
        for i, result in enumerate(results):
            if not result.moments:
                continue
            best = result.moments[0]
            stored = window_tokens.window(config, result.video.id, best.window)
            if stored is None:
                start, end = library.video_segments(result.video.id)[0][best.window]
                stored = _decoded_tokens(embedder, config, result.video, start, end)
            if stored is not None:
                tokens.append(stored)
                usable.append(i)
        logits = embedder.itm_scores(text, np.stack(tokens)) if tokens else []
        scores: list[float | None] = [None] * len(results)
        for i, logit in zip(usable, logits):
            scores[i] = results[i].moments[0].score + config.rerank_weight * float(logit)
        return scores

    return rescore


def _decoded_tokens(embedder: Embedder, config: ServiceConfig, video: VideoRecord, start: float,
                    end: float) -> np.ndarray | None:
    """A window's tokens from the file, probed against the limits again first (it may have been replaced on disk);
    None when the file is gone, undecodable or now over a limit (the result then keeps its cosine)."""
    try:
        probe(Path(video.path), config, f"video {video.id}")
        return embedder.clip_tokens(embedder.load_clip(video.path, start, end)[None])[0]
    except (VideoDecodeError, ServiceError, OSError):
        return None


def embed_example(embedder: Embedder, config: ServiceConfig, path: Path, name: str,
                  still: bool = False) -> VideoEmbedding:
    """Segment vectors of an uploaded query clip (or, with `still`, image); the file is removed afterwards whatever
    happens."""
    try:
        probe(path, config, name, still)
        return embedder.embed_video(path, config.segment_window, config.segment_stride)
    finally:
        path.unlink(missing_ok=True)


def indexed_video_vector(library: Library, video_id: int) -> np.ndarray:
    _, vectors = library.video_segments(video_id)
    if not len(vectors):
        raise NotFound(f"no video with id {video_id}")
    return pool_segments(vectors)
