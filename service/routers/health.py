"""GET /livez (no key ever: for probes), GET /healthz and GET /metrics (the read key under --protect-reads)."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.deps import get_state, require_read_key
from service.schemas import HealthOut, LiveOut
from service.state import ServiceState

router = APIRouter(tags=["health"])


@router.get("/livez", response_model=LiveOut, summary="The process answers (no key needed; says nothing else)")
def livez() -> LiveOut:
    return LiveOut(status="ok")


@router.get("/healthz", response_model=HealthOut, dependencies=[Depends(require_read_key)])
def healthz(state: ServiceState = Depends(get_state)) -> HealthOut:
    library = state.default_library
    return HealthOut(status="ok", videos=state.library.num_videos(), texts=state.library.num_texts(),
                     dim=state.library.dim, index=state.library.health(), jobs=state.jobs.counts(),
                     default_library=library.get("status"), model_fingerprint=state.embedder.fingerprint,
                     cleaned_at_start=state.cleaned)


@router.get("/metrics", response_class=Response, dependencies=[Depends(require_read_key)])
def metrics(state: ServiceState = Depends(get_state)) -> Response:
    m = state.metrics
    m.videos.set(state.library.num_videos())
    m.texts.set(state.library.num_texts())
    m.queue_depth.set(state.text_batcher.depth + state.search_batcher.depth)
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
