"""The contract every library backend keeps (FAISS + SQLite embedded, Milvus distributed): storage of videos as
time segments with one vector each, filtered vector search grouped by video, keyword search, a caption gallery,
and a version that moves on every write. Grouping into moments, pages and fusion are built on top, the same for
every backend (`index.search`)."""
from __future__ import annotations

from typing import Protocol

import numpy as np

from index.filters import Filter
from index.records import NewVideo, TextHit, TextRecord, VideoHit, VideoRecord


class Unsupported(Exception):
    """What this backend's server cannot answer (e.g. keyword search on a Milvus without BM25): say so, do not
    guess."""


class Library(Protocol):
    dim: int
    keywords: bool  # whether keyword_search works (False: it raises Unsupported)

    # --- writes ---
    def add_videos(self, items: list[NewVideo]) -> list[int]:
        """Store videos (or replace those with a `video_id`, KeyError when there is no such video) in one write;
        their ids, never reused after a delete."""

    def delete_video(self, video_id: int) -> VideoRecord | None:
        """Remove a video and its segments; its record, or None when there was none."""

    def add_texts(self, texts: list[str], vectors: np.ndarray, fields: list[dict] | None = None) -> list[int]:
        """Captions for video → text search."""

    def replace_text_vectors(self, ids: list[int], vectors: np.ndarray) -> None:
        """New vectors for stored captions, their ids kept (re-embedding with another model)."""

    def set_meta(self, key: str, value: str) -> None:
        """A setting stored with the library (e.g. the fingerprint of the model that made its vectors)."""

    # --- reads ---
    def get_meta(self, key: str) -> str | None: ...

    def get_video(self, video_id: int) -> VideoRecord | None:
        """A video with its segments."""

    def get_videos(self, video_ids) -> dict[int, VideoRecord]:
        """Videos without their segments, by id (unknown ids are left out)."""

    def list_videos(self, flt: Filter | None, offset: int, limit: int, sort: str = "video_id",
                    descending: bool = False) -> tuple[list[VideoRecord], int]:
        """A page of the videos passing `flt` in `sort` order (created, duration, title, video_id; ties by id),
        and how many pass in all."""

    def find_by_hash(self, content_hash: str) -> int | None:
        """The video stored from a file with this content hash, if any."""

    def list_texts(self, offset: int, limit: int) -> list[TextRecord]:
        """Captions in id order, a page at a time."""

    def video_segments(self, video_id: int) -> tuple[list[tuple[float, float]], np.ndarray]:
        """A video's windows in time order and their unit vectors."""

    def num_videos(self) -> int: ...

    def num_segments(self) -> int: ...

    def num_texts(self) -> int: ...

    def version(self) -> int:
        """A number that changes whenever the videos change (page tokens are only valid for one version)."""

    # --- search ---
    def search_videos(self, queries: np.ndarray, k: int, flt: Filter | None = None,
                      exclude: frozenset[int] = frozenset(), min_score: float = -1.0) -> list[list[VideoHit]]:
        """For each query row, the top-k videos passing `flt` (outside `exclude`) by their best segment's inner
        product, best first (ties by video id); fewer only when fewer videos pass."""

    def keyword_search(self, text: str, limit: int, flt: Filter | None = None) -> list[tuple[int, float]]:
        """(video id, BM25 score, higher is better) of videos whose title, file name or text fields hold a word
        of `text`, best first."""

    def search_texts(self, query: np.ndarray, k: int, min_score: float = -1.0) -> list[TextHit]: ...

    # --- lifecycle ---
    def checkpoint(self) -> bool:
        """Persist what only lives in memory; True when something was written."""

    def health(self) -> dict[str, str]:
        """How the backend stands (for /healthz)."""

    def close(self) -> None: ...
