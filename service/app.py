"""The FastAPI application: `create_app(config)` wires the model, the library, the batcher and the job worker."""
from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from encoders.video_text import Embedder
from media import VideoDecodeError
from service.config import ServiceConfig
from service.default_library import start_default_library
from service.folder_watch import start_folder_watch
from service.errors import ServiceError
from service.routers import embed, health, search, texts, videos
from service.state import build_state

log = logging.getLogger(__name__)

MULTIPART_OVERHEAD = 64 * 1024


def create_app(config: ServiceConfig, embedder: Embedder | None = None) -> FastAPI:
    state = build_state(config, embedder)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.text_batcher.start()
        state.search_batcher.start()
        state.jobs.start()
        state.checkpointer.start()
        if config.embedded_default:
            start_default_library(state)
        watcher = start_folder_watch(state) if config.library else None
        yield
        if watcher:
            watcher.stop()
        await state.text_batcher.stop()
        await state.search_batcher.stop()
        state.jobs.stop()
        state.checkpointer.stop()
        state.store.close()

    app = FastAPI(title="VideoMamba retrieval", version="0.1.0", lifespan=lifespan,
                  description="Text→video search with segment times, video→text, ingestion jobs. Write endpoints "
                              "need the API key (X-API-Key) when one is configured.")
    app.state.service = state
    for module in (search, videos, texts, embed, health):
        app.include_router(module.router)

    @app.middleware("http")
    async def bound_and_measure(request: Request, call_next):
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > config.max_upload_bytes + MULTIPART_OVERHEAD:
            return JSONResponse({"detail": f"request body of {length} bytes is larger than the upload limit of "
                                           f"{config.max_upload_bytes} bytes"}, status_code=413)
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        label = route.path if route is not None else "unmatched"
        state.metrics.requests.labels(label, request.method, str(response.status_code)).inc()
        state.metrics.latency.labels(label).observe(time.perf_counter() - started)
        return response

    @app.exception_handler(ServiceError)
    async def refused(request: Request, err: ServiceError):
        if err.status == 503:
            state.metrics.overloaded.inc()
        return JSONResponse({"detail": err.message, "code": err.code}, status_code=err.status, headers=err.headers)

    @app.exception_handler(VideoDecodeError)
    async def undecodable(request: Request, err: VideoDecodeError):
        return JSONResponse({"detail": str(err)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors())
        return JSONResponse({"detail": f"invalid request: {problems}"}, status_code=422)

    return app
