"""POST /embed: the vector the index would store for a text (JSON) or a video (multipart upload)."""
from __future__ import annotations

import asyncio

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Request, UploadFile

from service.deps import get_state, require_read_key
from service.media import probe_duration, save_upload
from service.routers.search import check_query
from service.schemas import EmbedOut, EmbedTextRequest, SegmentOut
from service.state import ServiceState

router = APIRouter(tags=["embed"], dependencies=[Depends(require_read_key)])

OPENAPI_BODY = {"requestBody": {"content": {
    "application/json": {"schema": EmbedTextRequest.model_json_schema()},
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "file": {"type": "string", "format": "binary"}}, "required": ["file"]}},
}}}


@router.post("/embed", response_model=EmbedOut, openapi_extra=OPENAPI_BODY,
             summary="Text (JSON {text}) or video (multipart file) → unit vector")
async def embed(request: Request, state: ServiceState = Depends(get_state)) -> EmbedOut:
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        try:
            req = EmbedTextRequest.model_validate_json(await request.body())
        except ValueError as err:
            raise HTTPException(422, f"body must be JSON {{\"text\": \"...\"}}: {err}") from None
        check_query(state, req.text)
        vector = await state.text_batcher.submit(req.text)
        return EmbedOut(kind="text", dim=len(vector), vector=vector.tolist())
    if content_type.startswith("multipart/form-data"):
        form = await request.form()
        file = form.get("file")
        if not isinstance(file, UploadFile) and not hasattr(file, "read"):
            raise HTTPException(422, "multipart body needs a 'file' field holding the video")
        cfg = state.config
        path = await save_upload(file, cfg.data_dir / "tmp", cfg.max_upload_bytes)
        try:
            probe_duration(path, cfg.max_video_seconds, f"upload {file.filename!r}")
            emb = await asyncio.to_thread(state.embedder.embed_video, path, cfg.segment_window, cfg.segment_stride)
        finally:
            path.unlink(missing_ok=True)
        mean = emb.vectors.mean(0)
        vector = mean / max(float(np.linalg.norm(mean)), 1e-12)
        return EmbedOut(kind="video", dim=len(vector), vector=vector.tolist(),
                        segments=[SegmentOut(start=s, end=e) for s, e in emb.spans])
    raise HTTPException(415, f"send application/json {{\"text\": ...}} or multipart/form-data with a file, "
                             f"not {content_type or 'no content type'}")
