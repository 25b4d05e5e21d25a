"""POST /search (text → videos, optional matching-head re-rank) and POST /search/video (video → texts, videos)."""
from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Depends, File, Form, HTTPException, UploadFile

from index import VideoHit
from service import queries
from service.deps import check_k, get_state, require_read_key
from service.schemas import SearchRequest, SearchResponse, SegmentOut, TextResult, VideoResult, VideoSearchResponse
from service.state import ServiceState
from service.uploads import save_upload

router = APIRouter(tags=["search"], dependencies=[Depends(require_read_key)])


def video_result(hit: VideoHit, rerank_score: float | None = None) -> VideoResult:
    return VideoResult(video_id=hit.video.id, score=hit.score, rerank_score=rerank_score,
                       segment=SegmentOut(start=hit.start, end=hit.end), path=hit.video.path,
                       duration=hit.video.duration, fields=hit.video.fields)


@router.post("/search", response_model=SearchResponse, summary="Find videos (and their best segment) for a text")
async def search(req: SearchRequest, state: ServiceState = Depends(get_state)) -> SearchResponse:
    check_k(state, req.k)
    queries.check_query_text(state.config, req.query)
    started = time.perf_counter()
    hits = await state.search_batcher.submit(queries.SearchQuery(req.query, req.k, req.min_score, req.filters))
    if req.rerank and hits:
        n = min(len(hits), state.config.rerank_candidates)
        head = await asyncio.to_thread(queries.rerank, state.embedder, req.query, hits[:n])
        results = [video_result(h, s) for h, s in head] + [video_result(h) for h in hits[n:]]
    else:
        results = [video_result(h) for h in hits]
    return SearchResponse(results=results, took_ms=(time.perf_counter() - started) * 1000)


@router.post("/search/video", response_model=VideoSearchResponse,
             summary="Captions from the text gallery and similar videos, for an upload or an indexed video")
async def search_by_video(file: UploadFile | None = File(None, description="a video file"),
                          video_id: int | None = Form(None, description="the id of an indexed video"),
                          k: int = Form(10), state: ServiceState = Depends(get_state)) -> VideoSearchResponse:
    check_k(state, k)
    if (file is None) == (video_id is None):
        raise HTTPException(422, "give exactly one of: a file upload or a video_id")
    started = time.perf_counter()
    cfg = state.config
    if video_id is not None:
        vector = await asyncio.to_thread(queries.indexed_video_vector, state.store, video_id)
    else:
        saved = await save_upload(file, cfg.data_dir / "tmp", cfg.max_upload_bytes)
        emb = await asyncio.to_thread(queries.embed_example, state.embedder, cfg, saved, f"upload {file.filename!r}")
        vector = emb.pooled()
    exclude = {video_id} if video_id is not None else set()
    texts = await asyncio.to_thread(state.store.search_texts, vector, k)
    videos = await asyncio.to_thread(state.store.search, vector, k, -1.0, None, exclude)
    return VideoSearchResponse(texts=[TextResult(id=t.text.id, text=t.text.text, score=t.score, fields=t.text.fields)
                                      for t in texts],
                               videos=[video_result(h) for h in videos],
                               took_ms=(time.perf_counter() - started) * 1000)
