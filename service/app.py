"""The FastAPI application: `create_app(config)` wires the model, the library, the batcher and the job worker."""
from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from encoders.video_io import VideoDecodeError
from index import VideoStore
from service.batcher import MicroBatcher, Overloaded
from service.config import ServiceConfig
from service.embedder import Embedder, load_embedder
from service.jobs import JobManager
from service.metrics import ServiceMetrics
from service.routers import embed, health, search, texts, videos
from service.state import Checkpointer, ServiceState, run_searches

log = logging.getLogger(__name__)

MULTIPART_OVERHEAD = 64 * 1024


def build_state(config: ServiceConfig, embedder: Embedder | None = None) -> ServiceState:
    if embedder is None:
        from service.default_library import resolve_model_path

        embedder = load_embedder(resolve_model_path(config), num_frames=config.num_frames,
                                 frame_size=config.frame_size, max_text_tokens=config.max_text_tokens)
    config.media_root.mkdir(parents=True, exist_ok=True)
    store = VideoStore(config.data_dir / "index", embedder.dim, config.index)
    log.info("library: %d videos, %d texts, index %s", store.num_videos(), store.num_texts(), store.recovery())
    metrics = ServiceMetrics()

    def on_batch(size: int, seconds: float) -> None:
        metrics.batch_size.observe(size)
        metrics.batch_seconds.observe(seconds)

    batch = config.batch_size if config.micro_batching else 1
    wait = config.batch_wait_ms / 1000
    text_batcher = MicroBatcher(embedder.embed_texts, batch, wait, config.queue_size, on_batch)
    search_batcher = MicroBatcher(partial(run_searches, embedder, store), batch, wait, config.queue_size, on_batch)
    jobs = JobManager(config.job_queue_size, on_finish=lambda job: metrics.jobs.labels(job.status).inc(),
                      record_path=config.data_dir / "jobs.sqlite")
    return ServiceState(config, embedder, store, text_batcher, search_batcher, jobs, metrics,
                        Checkpointer(store, config.checkpoint_interval_s))


def create_app(config: ServiceConfig, embedder: Embedder | None = None) -> FastAPI:
    state = build_state(config, embedder)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.text_batcher.start()
        state.search_batcher.start()
        state.jobs.start()
        state.checkpointer.start()
        if config.embedded_default:
            from service.default_library import start_default_library

            start_default_library(state)
        yield
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

    @app.exception_handler(Overloaded)
    async def overloaded(request: Request, err: Overloaded):
        state.metrics.overloaded.inc()
        return JSONResponse({"detail": str(err)}, status_code=503, headers={"Retry-After": "1"})

    @app.exception_handler(VideoDecodeError)
    async def undecodable(request: Request, err: VideoDecodeError):
        return JSONResponse({"detail": str(err)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors())
        return JSONResponse({"detail": f"invalid request: {problems}"}, status_code=422)

    return app
