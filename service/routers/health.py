"""GET /healthz and GET /metrics."""
from __future__ import annotations

import functools
import os

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from encoders.ops.selective_scan import ENV_VAR, resolve_backend
from service.deps import get_state
from service.schemas import HealthOut
from service.state import ServiceState

router = APIRouter(tags=["health"])


@functools.lru_cache(maxsize=None)
def _scan_backend(on_cuda: bool, requested: str | None) -> str:
    """The backend the selective-scan dispatcher picks for the encoder's float32 tensors, decided once per process
    (on CPU this builds or loads the compiled kernel the first time). `requested` is only the cache key: the
    dispatcher reads VIDEOMAMBA_SCAN_BACKEND itself."""
    try:
        return resolve_backend(None, on_cuda)
    except (ValueError, RuntimeError) as err:  # e.g. a forced backend that cannot run here
        return f"error: {err}"


def scan_backend(device: str) -> str:
    """What GET /healthz reports as `scan_backend` for an encoder on `device`: cpp, torch, ref or cuda."""
    return _scan_backend(str(device).startswith("cuda"), os.environ.get(ENV_VAR))


@router.get("/healthz", response_model=HealthOut)
def healthz(state: ServiceState = Depends(get_state)) -> HealthOut:
    library = state.default_library
    return HealthOut(status="ok", videos=state.store.num_videos(), texts=state.store.num_texts(),
                     dim=state.store.dim, index=state.store.recovery(), jobs=state.jobs.counts(),
                     default_library=library.get("status"), scan_backend=scan_backend(state.embedder.device))


@router.get("/metrics", response_class=Response)
def metrics(state: ServiceState = Depends(get_state)) -> Response:
    m = state.metrics
    m.videos.set(state.store.num_videos())
    m.texts.set(state.store.num_texts())
    m.queue_depth.set(state.text_batcher.depth + state.search_batcher.depth)
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
