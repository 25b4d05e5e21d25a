"""POST /videos (ingest as a background job), GET/DELETE /videos/{id}, GET /jobs/{id}."""
from __future__ import annotations

import json
from pathlib import Path

from fastapi import APIRouter, Depends, File, Form, HTTPException, UploadFile

from service.batcher import Overloaded
from service.deps import get_state, require_read_key, require_write_key
from service.media import probe_duration, resolve_media_path, save_upload
from service.schemas import DeleteOut, JobOut, SegmentOut, VideoOut
from service.state import ServiceState

router = APIRouter(tags=["videos"])


def job_out(job) -> JobOut:
    return JobOut(**vars(job))


def submit_ingest(state: ServiceState, path: Path, fields: dict, video_id: int | None, kind: str,
                  source: str):
    """Queue the embedding of `path` (already probed); the job stores the video and returns its id.

    An upload (kind "upload") whose job fails or is refused by a full queue is removed again.
    """
    cfg = state.config

    def body(progress) -> int:
        try:
            emb = state.embedder.embed_video(path, cfg.segment_window, cfg.segment_stride,
                                             progress=lambda done, total: progress(0.99 * done / total))
        except Exception:
            if kind == "upload":
                path.unlink(missing_ok=True)
            raise
        return state.store.add_video(str(path), emb.duration, emb.spans, emb.vectors, fields, video_id)

    try:
        return state.jobs.submit(kind, source, body)
    except Overloaded:
        if kind == "upload":
            path.unlink(missing_ok=True)
        raise


def _parse_fields(text: str | None) -> dict:
    if not text:
        return {}
    try:
        fields = json.loads(text)
    except json.JSONDecodeError as err:
        raise HTTPException(422, f"fields must be a JSON object: {err}") from None
    if not isinstance(fields, dict):
        raise HTTPException(422, f"fields must be a JSON object, got {type(fields).__name__}")
    return fields


@router.post("/videos", status_code=202, response_model=JobOut, dependencies=[Depends(require_write_key)],
             summary="Add (or, with video_id, replace) a video: an upload or a path under the media root")
async def add_video(file: UploadFile | None = File(None, description="a video file"),
                    path: str | None = Form(None, description="a file path relative to the media root"),
                    fields: str | None = Form(None, description="user fields, a JSON object"),
                    video_id: int | None = Form(None, description="replace this video (upsert)"),
                    state: ServiceState = Depends(get_state)) -> JobOut:
    if (file is None) == (path is None):
        raise HTTPException(422, "give exactly one of: a file upload or a path under the media root")
    user_fields = _parse_fields(fields)
    cfg = state.config
    if file is not None:
        target = await save_upload(file, cfg.media_root / "uploads", cfg.max_upload_bytes)
        name = f"upload {file.filename!r}"
        try:
            probe_duration(target, cfg.max_video_seconds, name)
        except HTTPException:
            target.unlink(missing_ok=True)
            raise
        user_fields.setdefault("filename", file.filename)
        job = submit_ingest(state, target, user_fields, video_id, "upload", file.filename or target.name)
    else:
        target = resolve_media_path(cfg.media_root, path)
        probe_duration(target, cfg.max_video_seconds, f"file {path!r}")
        job = submit_ingest(state, target, user_fields, video_id, "path", path)
    return job_out(job)


@router.get("/videos/{video_id}", response_model=VideoOut, dependencies=[Depends(require_read_key)])
def get_video(video_id: int, state: ServiceState = Depends(get_state)) -> VideoOut:
    record = state.store.get_video(video_id)
    if record is None:
        raise HTTPException(404, f"no video with id {video_id}")
    return VideoOut(id=record.id, path=record.path, duration=record.duration, fields=record.fields,
                    segments=[SegmentOut(start=s.start, end=s.end) for s in record.segments])


@router.delete("/videos/{video_id}", response_model=DeleteOut, dependencies=[Depends(require_write_key)])
def delete_video(video_id: int, state: ServiceState = Depends(get_state)) -> DeleteOut:
    record = state.store.get_video(video_id)
    if record is None or not state.store.delete_video(video_id):
        raise HTTPException(404, f"no video with id {video_id}")
    uploads = (state.config.media_root / "uploads").resolve()
    if Path(record.path).resolve().parent == uploads:  # files the service itself received are its to remove
        Path(record.path).unlink(missing_ok=True)
    return DeleteOut(deleted=video_id)


@router.get("/jobs/{job_id}", response_model=JobOut, dependencies=[Depends(require_read_key)])
def get_job(job_id: str, state: ServiceState = Depends(get_state)) -> JobOut:
    job = state.jobs.get(job_id)
    if job is None:
        raise HTTPException(404, f"no job with id {job_id!r} (job records do not survive a restart)")
    return job_out(job)
