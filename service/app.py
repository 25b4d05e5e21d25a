"""The FastAPI application: `create_app(config)` wires the model, the library, the batcher and the job worker."""
from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from encoders.video_text import Embedder
from index.backend import Unsupported
from media import VideoDecodeError
from service import openapi, orphans, static
from service.config import ServiceConfig
from service.default_library import start_default_library
from service.errors import ServiceError, response
from service.folder_watch import start_folder_watch
from service.gate import RequestGate
from service.routers import embed, health, search, texts, videos
from service.state import build_state

log = logging.getLogger(__name__)


def create_app(config: ServiceConfig, embedder: Embedder | None = None) -> FastAPI:
    state = build_state(config, embedder)
    state.cleaned = orphans.sweep(config, state.library)  # before any job or request can add files

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

    app = FastAPI(title="VideoMamba retrieval", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Text→video search answered with moments (start, end, score, thumbnail) grouped by "
                              "video, in pages; filters, keyword and hybrid search, search by example, \"A then "
                              "B\"; the video files (seekable) and thumbnails; video→text; ingestion jobs. Write "
                              "endpoints need the API key (X-API-Key or Authorization: Bearer) when one is "
                              "configured. Every error answers {detail, code}.")
    app.state.service = state
    for module in (search, videos, texts, embed, health):
        app.include_router(module.router)
    static.install(app)
    app.add_middleware(RequestGate, routes=app.router.routes, state=state)

    @app.exception_handler(ServiceError)
    async def refused(request: Request, err: ServiceError):
        if err.status == 503:
            state.metrics.overloaded.inc()
        return err.response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException):
        detail = str(err.detail)
        if err.status_code == 400 and err.__cause__ is not None:  # FastAPI's "error parsing the body": say which
            detail = f"{detail}: {str(err.__cause__)[:200]}"
        return response(err.status_code, detail, headers=getattr(err, "headers", None))

    @app.exception_handler(Unsupported)
    async def unsupported(request: Request, err: Unsupported):
        return response(400, str(err), "unsupported")

    @app.exception_handler(VideoDecodeError)
    async def undecodable(request: Request, err: VideoDecodeError):
        return response(400, f"not a decodable video: {err.reason}")

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors())
        return response(422, f"invalid request: {problems}")

    @app.exception_handler(Exception)
    async def failed(request: Request, err: Exception):  # a bug: logged with its traceback, answered in the one shape
        log.error("%s %s failed", request.method, request.url.path, exc_info=err)
        return response(500, "internal error; the service log has the details")

    openapi.install(app, config)
    return app
