"""POST /embed: the vector the index would store for a text (JSON) or a video (multipart upload)."""
from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, HTTPException, Request, UploadFile
from pydantic import ValidationError

from service import queries
from service.deps import get_state, require_read_key
from service.layout import layout
from service.schemas import EmbedOut, EmbedTextRequest, SegmentOut
from service.state import ServiceState
from service.uploads import client_name, save_upload

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
        except ValidationError as err:
            problem = err.errors()[0]
            raise HTTPException(422, f"body must be JSON {{\"text\": \"...\"}}: {problem['msg']} at "
                                     f"{'.'.join(str(p) for p in problem['loc']) or 'the top'}") from None
        queries.check_text(state.config, req.text, "text")
        vector = await state.text_batcher.submit(req.text)
        return EmbedOut(kind="text", dim=len(vector), vector=vector.tolist())
    if content_type.startswith("multipart/form-data"):
        form = await request.form()
        file = form.get("file")
        if not isinstance(file, UploadFile) and not hasattr(file, "read"):
            raise HTTPException(422, "multipart body needs a 'file' field holding the video")
        cfg = state.config
        saved = await save_upload(file, layout(cfg).tmp, cfg.max_upload_bytes)
        emb = await asyncio.to_thread(queries.embed_example, state.embedder, cfg, saved,
                                      f"upload {client_name(file.filename)!r}")
        vector = emb.pooled()
        return EmbedOut(kind="video", dim=len(vector), vector=vector.tolist(),
                        segments=[SegmentOut(start=s, end=e) for s, e in emb.spans])
    raise HTTPException(415, f"send application/json {{\"text\": ...}} or multipart/form-data with a file, "
                             f"not {content_type or 'no content type'}")
