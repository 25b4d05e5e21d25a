"""Request and response bodies (pydantic v2). Limits that depend on the configuration (k, query length, moments
per video, page depth) are checked by `service.queries` and written into the OpenAPI schema by `service.openapi`."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt

Scalar = str | StrictInt | StrictFloat | StrictBool
Number = StrictInt | StrictFloat
MAX_ID = 2**63 - 1  # SQLite's largest integer


class ExampleMoment(BaseModel):
    """An indexed video, or one moment of it, as the query: find what looks like it in other videos."""

    model_config = ConfigDict(extra="forbid")
    video_id: StrictInt = Field(ge=1, le=MAX_ID)
    start: Number | None = Field(None, ge=0, description="seconds; default: the start of the video")
    end: Number | None = Field(None, ge=0, description="seconds; default: the end of the video")


class SearchOptions(BaseModel):
    """How results come back; shared by text search and search by an uploaded example."""

    model_config = ConfigDict(extra="forbid")
    k: StrictInt = Field(10, ge=1, description="results per page")
    page_token: str | None = Field(None, max_length=512, description="next_page_token of the previous page")
    filters: dict[str, Scalar | list[Scalar] | dict[str, Scalar | list[Scalar]]] | None = Field(
        None, description='conditions on fields, all of which must hold: {"field": value} (equality), '
                          '{"field": [a, b]} (any of), {"field": {"gte": 10, "lt": 60}} (a range; gt, gte, lt, '
                          'lte, eq, in). Built-in fields: duration, created (ingest time, epoch seconds), title, '
                          'video_id; other names are user fields.',
        examples=[{"corpus": "didemo", "duration": {"gte": 10}}])
    sort: str = Field("score", max_length=70, pattern=r"^-?[A-Za-z0-9_]+$",
                      description="score (best first), or created, duration, title, video_id; a leading - sorts "
                                  "descending. A field sort orders the most relevant candidates by that field.")
    group_by: Literal["video", "moment"] = Field("video", description="video: results grouped by video, each with "
                                                                      "its moments; moment: a flat list of moments")
    moments_per_video: StrictInt = Field(3, ge=1)
    min_score: Number = Field(-1.0, ge=-1.0, le=1.0, description="drop moments with a lower cosine score")
    return_vectors: StrictBool = Field(False, description="add the query vector and each moment's vector")


class SearchRequest(SearchOptions):
    query: str | None = Field(None, min_length=1, description="free text describing the moment to find",
                              examples=["a green circle spins"])
    then: str | None = Field(None, min_length=1, description='"A then B": a second moment that must start after '
                                                             "the first ends, within max_gap seconds")
    max_gap: Number = Field(10.0, ge=0, le=86400, description="seconds allowed between the two moments of a then")
    example: ExampleMoment | None = Field(None, description="query by an indexed video's moment instead of a text")
    mode: Literal["vector", "keyword", "hybrid"] = Field(
        "vector", description="vector: embeddings; keyword: BM25 over titles, file names, text fields and captions; "
                              "hybrid: reciprocal rank fusion of both (k = 60, each list cut at 200)")
    rerank: StrictBool = Field(False, description="re-order the top candidates (--rerank-candidates, 16) by cosine + "
                                                  "--rerank-weight (0.03) x the matching head's logit on each one's "
                                                  "best moment, from window tokens kept at ingestion; measured by "
                                                  "benchmarks/bench_rerank.py")

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"query": "a green circle spins", "k": 3},
        {"query": "a ball moves to the left", "then": "the ball turns red", "max_gap": 10},
        {"query": "circle", "mode": "hybrid", "filters": {"duration": {"gte": 10}}, "group_by": "moment"},
        {"example": {"video_id": 1, "start": 0, "end": 8}, "k": 5}]})


class MomentOut(BaseModel):
    start: float = Field(description="seconds")
    end: float = Field(description="seconds")
    score: float = Field(description="cosine of the moment's best window with the query")
    thumbnail_url: str
    vector: list[float] | None = Field(None, description="with return_vectors: the best window's vector")


class VideoResult(BaseModel):
    video_id: int
    score: float = Field(description="the best moment's score (hybrid and keyword: the fused or BM25 score; then: "
                                     "the pair's mean)")
    title: str
    duration: float | None
    fields: dict[str, Any]
    thumbnail_url: str = Field(description="the best moment's thumbnail")
    media_url: str = Field(description="the video file, seekable (HTTP Range)")
    moments: list[MomentOut] = Field(description="best first; for a then query, the pair in time order")
    rerank_score: float | None = Field(None, description="with rerank, for the re-ordered top candidates: the "
                                                         "score they were ordered by")


class SearchResponse(BaseModel):
    results: list[VideoResult]
    next_page_token: str | None = Field(description="send back as page_token for the next page; null on the last")
    query_vector: list[float] | None = None
    took_ms: float


class VideoOut(BaseModel):
    id: int
    title: str
    duration: float | None
    created: float
    fields: dict[str, Any]
    status: Literal["ready", "missing_file"]
    thumbnail_url: str
    media_url: str
    segments: list[dict[str, float]] = Field(description="[{start, end}] in seconds, the indexed windows")


class VideoListOut(BaseModel):
    videos: list[VideoOut]
    total: int = Field(description="videos passing the filters")
    next_page_token: str | None


class FieldValue(BaseModel):
    value: Scalar
    videos: int = Field(description="sampled videos holding this value")


class FieldOut(BaseModel):
    name: str
    type: Literal["text", "number", "boolean", "object", "mixed", "null"] = Field(
        description="the JSON type of its values (of a list's items); object fields cannot be filtered on")
    videos: int = Field(description="sampled videos that carry the field")
    distinct: int = Field(description="distinct values among them; all are listed when it is at most len(values)")
    values: list[FieldValue] = Field(description="the most frequent values, at most 10")


class FieldsOut(BaseModel):
    fields: list[FieldOut] = Field(description="user fields by name (the built-ins duration, created, title and "
                                               "video_id are not listed)")
    sampled: int = Field(description="videos read, the newest first (at most 1000)")
    total: int = Field(description="videos in the library")


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


class SegmentOut(BaseModel):
    start: float
    end: float


class EmbedOut(BaseModel):
    kind: str
    dim: int
    vector: list[float]
    segments: list[SegmentOut] | None = Field(None, description="for a video: the segments whose vectors "
                                                                 "were averaged")


class AuthOut(BaseModel):
    """What the API key guards, and how the key this request sent (X-API-Key, Authorization, or the page's cookie)
    stands."""

    writes: bool = Field(description="adding, replacing and deleting need the key")
    reads: bool = Field(description="searching and reading need it too (--protect-reads)")
    key: Literal["not_required", "missing", "accepted", "wrong"] = Field(description="the key sent with this "
                                                                                       "request")


class LibraryFolderOut(BaseModel):
    """Progress of `--library DIR` (service.folder_watch)."""

    folder: str
    files_seen: int = Field(description="video files in the folder now")
    indexed: int = Field(description="of those, in the library")
    pending: int = Field(description="of those, waiting to settle, queued or being embedded")
    failed: int = Field(description="of those, undecodable or refused (retried when the file changes)")
    status: str = Field(description="scanning, indexing, watching, or failed: <reason>")


class LiveOut(BaseModel):
    status: Literal["ok"]


class HealthOut(BaseModel):
    status: str
    videos: int
    texts: int
    dim: int
    index: dict[str, str]
    jobs: dict[str, int]
    default_library: str | None = None
    scan_backend: str = Field(description="the selective-scan backend the video encoder runs on this machine: "
                                          "cpp (the compiled CPU kernel), torch (pure PyTorch), ref or cuda; "
                                          "\"error: ...\" when a forced backend cannot run here")
    library: LibraryFolderOut | None = Field(None, description="with --library: how far indexing the folder got")
    model_fingerprint: str = Field(description="of the model that made the library's vectors (see reindex)")
    cleaned_at_start: dict[str, int] = Field(description="files that belonged to no video, removed at start, by "
                                                         "kind: uploads, thumbnails, temporary")


class ErrorOut(BaseModel):
    """Every error answer has this shape."""

    detail: str = Field(description="what went wrong and what to do")
    code: str = Field(description="stable machine-readable reason: bad_request, unauthorized, forbidden, not_found, "
                                  "too_large, invalid_request, stale_page_token, overloaded, ...")
