"""The FastAPI application: `create_app(config)` wires the model, the library, the batcher and the job worker."""
from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from encoders.video_text import Embedder
from index.backend import Unsupported
from media import VideoDecodeError
from service.config import ServiceConfig
from service.default_library import start_default_library
from service import openapi, static
from service.folder_watch import start_folder_watch
from service.errors import ServiceError
from service.routers import embed, health, search, texts, videos
from service.state import build_state

log = logging.getLogger(__name__)

MULTIPART_OVERHEAD = 64 * 1024
HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
              413: "too_large", 415: "unsupported_media_type", 422: "invalid_request", 503: "overloaded"}


def error(status: int, detail: str, code: str | None = None, headers: dict | None = None) -> JSONResponse:
    """The one error shape of the API (`ErrorOut`)."""
    return JSONResponse({"detail": detail, "code": code or HTTP_CODES.get(status, "error")}, status_code=status,
                        headers=headers)


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
        state.library.close()

    app = FastAPI(title="VideoMamba retrieval", version="0.1.0", lifespan=lifespan,
                  description="Text→video search answered with moments (start, end, score, thumbnail) grouped by "
                              "video, in pages; filters, keyword and hybrid search, search by example, \"A then "
                              "B\"; the video files (seekable) and thumbnails; video→text; ingestion jobs. Write "
                              "endpoints need the API key (X-API-Key or Authorization: Bearer) when one is "
                              "configured. Every error answers {detail, code}.")
    app.state.service = state
    for module in (search, videos, texts, embed, health):
        app.include_router(module.router)

    @app.middleware("http")
    async def bound_and_measure(request: Request, call_next):
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > config.max_upload_bytes + MULTIPART_OVERHEAD:
            return error(413, f"request body of {length} bytes is larger than the upload limit of "
                              f"{config.max_upload_bytes} bytes")
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
        return error(err.status, err.message, err.code, err.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException):
        return error(err.status_code, str(err.detail), headers=getattr(err, "headers", None))

    @app.exception_handler(Unsupported)
    async def unsupported(request: Request, err: Unsupported):
        return error(400, str(err), "unsupported")

    @app.exception_handler(VideoDecodeError)
    async def undecodable(request: Request, err: VideoDecodeError):
        return error(400, f"not a decodable video: {err.reason}")

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors())
        return error(422, f"invalid request: {problems}")

    openapi.install(app, config)
    static.install(app)

    return app
