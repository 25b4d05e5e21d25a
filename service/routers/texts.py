"""POST /texts: captions for the gallery that POST /search/video answers from."""
from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, HTTPException

from index import check_fields
from service import queries
from service.deps import get_state, require_write_key
from service.schemas import AddTextsOut, AddTextsRequest
from service.state import ServiceState

router = APIRouter(tags=["texts"])


@router.post("/texts", response_model=AddTextsOut, dependencies=[Depends(require_write_key)])
async def add_texts(req: AddTextsRequest, state: ServiceState = Depends(get_state)) -> AddTextsOut:
    cfg = state.config
    if len(req.texts) > cfg.max_texts_per_request:
        raise HTTPException(422, f"{len(req.texts)} texts in one request; the limit is {cfg.max_texts_per_request}")
    for i, text in enumerate(req.texts):
        queries.check_text(cfg, text, f"texts[{i}]")
    if req.fields is not None and len(req.fields) != len(req.texts):
        raise HTTPException(422, f"got {len(req.fields)} fields for {len(req.texts)} texts")
    for i, fields in enumerate(req.fields or []):
        try:
            check_fields(fields)
        except ValueError as err:  # what cannot be served back is not stored (index.records)
            raise HTTPException(422, f"fields[{i}]: {err}") from None
    vectors = await asyncio.to_thread(state.embedder.embed_texts, req.texts)
    ids = await asyncio.to_thread(state.library.add_texts, req.texts, vectors, req.fields)
    return AddTextsOut(ids=ids)
