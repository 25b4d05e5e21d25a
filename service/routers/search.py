"""POST /search (text, "A then B", keywords, or an indexed moment → videos with moments), POST /search/file (an
uploaded image or clip as the query) and POST /search/video (a video → captions from the text gallery)."""
from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Depends, File, Form, HTTPException, UploadFile
from pydantic import ValidationError

from index.search import MomentResult, Query, VideoResult as IndexResult, search as search_library
from service import queries, thumbnails
from service.deps import check_k, get_state, require_read_key
from service.layout import layout
from service.schemas import (MAX_ID, MomentOut, SearchOptions, SearchRequest, SearchResponse, TextResult, VideoResult,
                             VideoSearchResponse)
from service.state import ServiceState
from service.uploads import client_name, file_digest, save_upload

router = APIRouter(tags=["search"], dependencies=[Depends(require_read_key)])


def moment_out(video_id: int, moment, vector=None) -> MomentOut:
    return MomentOut(start=moment.start, end=moment.end, score=moment.score,
                     thumbnail_url=thumbnails.url(video_id, (moment.start + moment.end) / 2),
                     vector=None if vector is None else [float(v) for v in vector])


def result_out(result: IndexResult | MomentResult, vectors: bool) -> VideoResult:
    if isinstance(result, MomentResult):
        video, score, rerank_score = result.video, result.moment.score, None
        moments = [moment_out(video.id, result.moment, result.vector if vectors else None)]
    else:
        video, score, rerank_score = result.video, result.score, result.rescored
        moments = [moment_out(video.id, m, v if vectors else None)
                   for m, v in zip(result.moments, result.moment_vectors)]
    thumbnail = moments[0].thumbnail_url if moments else thumbnails.url(video.id, (video.duration or 0) / 2)
    return VideoResult(video_id=video.id, score=score, title=video.title, duration=video.duration,
                       fields=video.fields, thumbnail_url=thumbnail, media_url=f"/videos/{video.id}/media",
                       moments=moments, rerank_score=rerank_score)


async def answer(state: ServiceState, planned: queries.PlannedSearch, options: SearchOptions,
                 started: float) -> SearchResponse:
    page, query = await state.search_batcher.submit(planned)
    vectors = options.return_vectors
    results = [result_out(r, vectors) for r in page.results]
    return SearchResponse(results=results, next_page_token=queries.next_page_token(planned, page, state.config),
                          query_vector=[float(v) for v in query.vector] if vectors else None,
                          took_ms=(time.perf_counter() - started) * 1000)


@router.post("/search", response_model=SearchResponse,
             summary="Videos and their moments for a text, an ordered pair of texts, keywords or an indexed moment")
async def search(req: SearchRequest, state: ServiceState = Depends(get_state)) -> SearchResponse:
    started = time.perf_counter()
    planned = await asyncio.to_thread(queries.plan, state.config, state.library, req)
    return await answer(state, planned, req, started)


@router.post("/search/file", response_model=SearchResponse,
             summary="Moments that look like an uploaded image (JPEG/PNG) or short clip")
async def search_by_file(file: UploadFile = File(description="an image or a video clip"),
                         options: str = Form("{}", description="SearchOptions as JSON: k, filters, page_token, ..."),
                         state: ServiceState = Depends(get_state)) -> SearchResponse:
    started = time.perf_counter()
    try:
        opts = SearchOptions.model_validate_json(options)
    except ValidationError as err:
        raise HTTPException(422, f"options: {err.errors()[0]['msg']} at {err.errors()[0]['loc']}") from None
    cfg = state.config
    saved = await save_upload(file, layout(cfg).tmp, cfg.max_upload_bytes, allow_images=True)
    digest = await asyncio.to_thread(file_digest, saved)
    emb = await asyncio.to_thread(queries.embed_example, state.embedder, cfg, saved,
                                  f"upload {client_name(file.filename)!r}", True)
    planned = await asyncio.to_thread(queries.plan, cfg, state.library, opts, emb.pooled(), digest)
    return await answer(state, planned, opts, started)


@router.post("/search/video", response_model=VideoSearchResponse,
             summary="Captions from the text gallery and similar videos, for an upload or an indexed video")
async def search_by_video(file: UploadFile | None = File(None, description="a video file"),
                          video_id: int | None = Form(None, ge=1, le=MAX_ID,
                                                      description="the id of an indexed video"),
                          k: int = Form(10, ge=1), state: ServiceState = Depends(get_state)) -> VideoSearchResponse:
    check_k(state, k)
    if (file is None) == (video_id is None):
        raise HTTPException(422, "give exactly one of: a file upload or a video_id")
    started = time.perf_counter()
    cfg = state.config
    if video_id is not None:
        vector = await asyncio.to_thread(queries.indexed_video_vector, state.library, video_id)
    else:
        saved = await save_upload(file, layout(cfg).tmp, cfg.max_upload_bytes)
        emb = await asyncio.to_thread(queries.embed_example, state.embedder, cfg, saved,
                                      f"upload {client_name(file.filename)!r}")
        vector = emb.pooled()
    exclude = frozenset({video_id}) if video_id is not None else frozenset()
    texts = await asyncio.to_thread(state.library.search_texts, vector, k)
    page = (await asyncio.to_thread(search_library, state.library, [Query(vector, exclude=exclude, k=k)]))[0]
    return VideoSearchResponse(texts=[TextResult(id=t.text.id, text=t.text.text, score=t.score, fields=t.text.fields)
                                      for t in texts],
                               videos=[result_out(r, False) for r in page.results],
                               took_ms=(time.perf_counter() - started) * 1000)
