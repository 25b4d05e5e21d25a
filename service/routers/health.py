"""GET /healthz and GET /metrics."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.deps import get_state
from service.schemas import HealthOut
from service.state import ServiceState

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthOut)
def healthz(state: ServiceState = Depends(get_state)) -> HealthOut:
    library = state.default_library
    return HealthOut(status="ok", videos=state.store.num_videos(), texts=state.store.num_texts(),
                     dim=state.store.dim, index=state.store.recovery(), jobs=state.jobs.counts(),
                     default_library=library.get("status"), library=state.library_folder or None)


@router.get("/metrics", response_class=Response)
def metrics(state: ServiceState = Depends(get_state)) -> Response:
    m = state.metrics
    m.videos.set(state.store.num_videos())
    m.texts.set(state.store.num_texts())
    m.queue_depth.set(state.text_batcher.depth + state.search_batcher.depth)
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
