"""Answering searches: text queries micro-batched through the encoder and the index, the matching-head re-rank,
and the vector of a query by example (an uploaded clip or an indexed video)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from encoders.video_text import Embedder, VideoEmbedding, pool_segments
from index import VideoHit, VideoStore
from media import VideoDecodeError
from service.config import ServiceConfig
from service.errors import NotFound, Unprocessable
from service.uploads import probe


@dataclass(frozen=True)
class SearchQuery:
    text: str
    k: int
    min_score: float
    filters: dict | None


def check_query_text(config: ServiceConfig, text: str) -> None:
    if len(text) > config.max_query_chars:
        raise Unprocessable(f"query is {len(text)} characters long; the limit is {config.max_query_chars}")
    if not text.strip():
        raise Unprocessable("query is blank")


def run_searches(embedder: Embedder, store: VideoStore, queries: list[SearchQuery]) -> list[list[VideoHit]]:
    """One encoder forward and one batched index search for a micro-batch of text queries."""
    vectors = embedder.embed_texts([q.text for q in queries])
    hits = store.search_many(vectors, max(q.k for q in queries), [q.min_score for q in queries],
                             [q.filters for q in queries])
    return [h[:q.k] for h, q in zip(hits, queries)]


def rerank(embedder: Embedder, query: str, hits: list[VideoHit]) -> list[tuple[VideoHit, float | None]]:
    """Best segments of `hits` scored by the matching head, highest first; undecodable ones keep ITC order after."""
    clips, scored, unscored = [], [], []
    for hit in hits:
        try:
            clips.append(embedder.load_clip(hit.video.path, hit.start, hit.end))
            scored.append(hit)
        except (VideoDecodeError, OSError):
            unscored.append((hit, None))
    if not scored:
        return unscored
    logits = embedder.itm_scores(query, torch.stack(clips))
    ranked = sorted(zip(scored, logits.tolist()), key=lambda p: -p[1])
    return ranked + unscored


def embed_example(embedder: Embedder, config: ServiceConfig, path: Path, name: str) -> VideoEmbedding:
    """Segment vectors of an uploaded query clip; the file is removed afterwards whatever happens."""
    try:
        probe(path, config.max_video_seconds, name)
        return embedder.embed_video(path, config.segment_window, config.segment_stride)
    finally:
        path.unlink(missing_ok=True)


def indexed_video_vector(store: VideoStore, video_id: int) -> np.ndarray:
    vectors = store.segment_vectors(video_id)
    if not len(vectors):
        raise NotFound(f"no video with id {video_id}")
    return pool_segments(vectors)
