"""GET /livez (for probes) and GET /auth (what the key guards) need no key ever; GET /healthz and GET /metrics
need the read key under --protect-reads."""
from __future__ import annotations

from fastapi import APIRouter, Cookie, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.deps import KEY_COOKIE, get_state, key_header, key_status, presented_key, require_read_key
from service.schemas import AuthOut, HealthOut, LiveOut
from service.state import ServiceState

router = APIRouter(tags=["health"])


@router.get("/livez", response_model=LiveOut, summary="The process answers (no key needed; says nothing else)")
def livez() -> LiveOut:
    return LiveOut(status="ok")


@router.get("/auth", response_model=AuthOut, summary="What the API key guards, and whether the key sent (a header, "
                                                       "or the page's cookie) is accepted; no key needed")
def auth(state: ServiceState = Depends(get_state), x_api_key: str | None = key_header(),
         authorization: str | None = key_header(),
         cookie_key: str | None = Cookie(None, alias=KEY_COOKIE, max_length=1024)) -> AuthOut:
    key = state.config.api_key
    return AuthOut(writes=key is not None, reads=key is not None and state.config.protect_reads,
                   key=key_status(key, presented_key(x_api_key, authorization, cookie_key)))


@router.get("/healthz", response_model=HealthOut, dependencies=[Depends(require_read_key)])
def healthz(state: ServiceState = Depends(get_state)) -> HealthOut:
    library = state.default_library
    return HealthOut(status="ok", videos=state.library.num_videos(), texts=state.library.num_texts(),
                     dim=state.library.dim, index=state.library.health(), jobs=state.jobs.counts(),
                     default_library=library.get("status"), scan_backend=state.embedder.scan_backend,
                     library=state.library_folder or None, model_fingerprint=state.embedder.fingerprint,
                     cleaned_at_start=state.cleaned)


@router.get("/metrics", response_class=Response, dependencies=[Depends(require_read_key)])
def metrics(state: ServiceState = Depends(get_state)) -> Response:
    m = state.metrics
    m.videos.set(state.library.num_videos())
    m.texts.set(state.library.num_texts())
    m.queue_depth.set(state.text_batcher.depth + state.search_batcher.depth)
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
