"""Request and response bodies (pydantic v2). Limits that depend on the configuration are checked in the routes."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

Scalar = str | int | float | bool


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1, description="free text describing the moment to find")
    k: int = Field(10, ge=1, description="how many videos to return (at most the server's max_k)")
    min_score: float = Field(-1.0, ge=-1.0, le=1.0, description="drop results with a lower ITC cosine score")
    filters: dict[str, Scalar | list[Scalar]] | None = Field(
        None, description="keep videos whose user fields equal each value (a list means any of)")
    rerank: bool = Field(False, description="re-rank the top candidates with the video-text matching head")


class SegmentOut(BaseModel):
    start: float
    end: float


class VideoOut(BaseModel):
    id: int
    path: str
    duration: float | None
    fields: dict[str, Any]
    segments: list[SegmentOut] = []


class VideoResult(BaseModel):
    video_id: int
    score: float = Field(description="ITC cosine of the best segment (unit query vs. unit segment vector)")
    rerank_score: float | None = Field(None, description="matching-head logit when re-ranked")
    segment: SegmentOut = Field(description="the best-matching segment of the video")
    path: str
    duration: float | None
    fields: dict[str, Any]


class SearchResponse(BaseModel):
    results: list[VideoResult]
    took_ms: float


class TextResult(BaseModel):
    id: int
    text: str
    score: float
    fields: dict[str, Any] = {}


class VideoSearchResponse(BaseModel):
    texts: list[TextResult]
    videos: list[VideoResult]
    took_ms: float


class JobOut(BaseModel):
    id: str
    kind: str
    source: str
    status: str
    progress: float
    video_id: int | None
    error: str | None
    created: float
    finished: float | None


class DeleteOut(BaseModel):
    deleted: int


class AddTextsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    texts: list[str] = Field(min_length=1)
    fields: list[dict[str, Any]] | None = Field(None, description="one dict per text, stored with it")


class AddTextsOut(BaseModel):
    ids: list[int]


class EmbedTextRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1)


class EmbedOut(BaseModel):
    kind: str
    dim: int
    vector: list[float]
    segments: list[SegmentOut] | None = Field(None, description="for a video: the segments whose vectors "
                                                                 "were averaged")


class LibraryFolderOut(BaseModel):
    """Progress of `--library DIR` (service.folder_watch)."""

    folder: str
    files_seen: int = Field(description="video files in the folder now")
    indexed: int = Field(description="of those, in the library")
    pending: int = Field(description="of those, waiting to settle, queued or being embedded")
    failed: int = Field(description="of those, undecodable or refused (retried when the file changes)")
    status: str = Field(description="scanning, indexing, watching, or failed: <reason>")


class HealthOut(BaseModel):
    status: str
    videos: int
    texts: int
    dim: int
    index: dict[str, str]
    jobs: dict[str, int]
    default_library: str | None = None
    library: LibraryFolderOut | None = Field(None, description="with --library: how far indexing the folder got")


class ErrorOut(BaseModel):
    detail: str
