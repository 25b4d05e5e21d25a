"""POST /search (text → videos, optional matching-head re-rank) and POST /search/video (video → texts, videos)."""
from __future__ import annotations

import asyncio
import time

import numpy as np
import torch
from fastapi import APIRouter, Depends, File, Form, HTTPException, UploadFile

from encoders.video_io import VideoDecodeError
from index import VideoHit
from service.deps import check_k, get_state, require_read_key
from service.media import probe_duration, save_upload
from service.schemas import SearchRequest, SearchResponse, SegmentOut, TextResult, VideoResult, VideoSearchResponse
from service.state import SearchQuery, ServiceState

router = APIRouter(tags=["search"], dependencies=[Depends(require_read_key)])


def video_result(hit: VideoHit, rerank_score: float | None = None) -> VideoResult:
    return VideoResult(video_id=hit.video.id, score=hit.score, rerank_score=rerank_score,
                       segment=SegmentOut(start=hit.start, end=hit.end), path=hit.video.path,
                       duration=hit.video.duration, fields=hit.video.fields)


def check_query(state: ServiceState, text: str) -> None:
    if len(text) > state.config.max_query_chars:
        raise HTTPException(422, f"query is {len(text)} characters long; the limit is {state.config.max_query_chars}")
    if not text.strip():
        raise HTTPException(422, "query is blank")


def rerank(state: ServiceState, query: str, hits: list[VideoHit]) -> list[tuple[VideoHit, float | None]]:
    """Best segments of `hits` scored by the matching head, highest first; undecodable ones keep ITC order after."""
    clips, scored, unscored = [], [], []
    for hit in hits:
        try:
            clips.append(state.embedder.load_clip(hit.video.path, hit.start, hit.end))
            scored.append(hit)
        except (VideoDecodeError, OSError):
            unscored.append((hit, None))
    if not scored:
        return unscored
    logits = state.embedder.itm_scores(query, torch.stack(clips))
    ranked = sorted(zip(scored, logits.tolist()), key=lambda p: -p[1])
    return ranked + unscored


@router.post("/search", response_model=SearchResponse, summary="Find videos (and their best segment) for a text")
async def search(req: SearchRequest, state: ServiceState = Depends(get_state)) -> SearchResponse:
    check_k(state, req.k)
    check_query(state, req.query)
    started = time.perf_counter()
    hits = await state.search_batcher.submit(SearchQuery(req.query, req.k, req.min_score, req.filters))
    if req.rerank and hits:
        n = min(len(hits), state.config.rerank_candidates)
        head = await asyncio.to_thread(rerank, state, req.query, hits[:n])
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
    if video_id is not None:
        vector = state.store.video_vector(video_id)
        if vector is None:
            raise HTTPException(404, f"no video with id {video_id}")
    else:
        vector = await asyncio.to_thread(_embed_upload_sync, state, await _save_query_upload(state, file),
                                         file.filename)
    exclude = {video_id} if video_id is not None else set()
    texts = await asyncio.to_thread(state.store.search_texts, vector, k)
    videos = await asyncio.to_thread(state.store.search, vector, k, -1.0, None, exclude)
    return VideoSearchResponse(texts=[TextResult(id=t.text.id, text=t.text.text, score=t.score, fields=t.text.fields)
                                      for t in texts],
                               videos=[video_result(h) for h in videos],
                               took_ms=(time.perf_counter() - started) * 1000)


async def _save_query_upload(state: ServiceState, file: UploadFile):
    return await save_upload(file, state.config.data_dir / "tmp", state.config.max_upload_bytes)


def _embed_upload_sync(state: ServiceState, path, name: str | None) -> np.ndarray:
    """A whole-video vector for a query upload (normalized mean of its segment vectors); the file is removed."""
    cfg = state.config
    try:
        probe_duration(path, cfg.max_video_seconds, f"upload {name!r}")
        emb = state.embedder.embed_video(path, cfg.segment_window, cfg.segment_stride)
    finally:
        path.unlink(missing_ok=True)
    mean = emb.vectors.mean(0)
    return mean / max(float(np.linalg.norm(mean)), 1e-12)
