"""GET /healthz and GET /metrics."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Header, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.deps import get_state, key_status, presented_key
from service.schemas import AuthOut, HealthOut
from service.state import ServiceState

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthOut,
            summary="Health, library size, and what the API key guards (checking the key sent, if any)")
def healthz(state: ServiceState = Depends(get_state), x_api_key: str | None = Header(None),
            authorization: str | None = Header(None)) -> HealthOut:
    library = state.default_library
    key = state.config.api_key
    auth = AuthOut(writes=key is not None, reads=key is not None and state.config.protect_reads,
                   key=key_status(key, presented_key(x_api_key, authorization)))
    return HealthOut(status="ok", videos=state.library.num_videos(), texts=state.library.num_texts(),
                     dim=state.library.dim, index=state.library.health(), jobs=state.jobs.counts(),
                     default_library=library.get("status"), auth=auth,
                     scan_backend=state.embedder.scan_backend,
                     library=state.library_folder or None)


@router.get("/metrics", response_class=Response)
def metrics(state: ServiceState = Depends(get_state)) -> Response:
    m = state.metrics
    m.videos.set(state.library.num_videos())
    m.texts.set(state.library.num_texts())
    m.queue_depth.set(state.text_batcher.depth + state.search_batcher.depth)
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
