"""POST /videos (ingest as a background job), GET/DELETE /videos/{id}, GET /jobs/{id}."""
from __future__ import annotations

import json

from fastapi import APIRouter, Depends, File, Form, HTTPException, UploadFile

from service import ingest
from service.deps import get_state, require_read_key, require_write_key
from service.schemas import DeleteOut, JobOut, SegmentOut, VideoOut
from service.state import ServiceState
from service.uploads import save_upload

router = APIRouter(tags=["videos"])


def job_out(job) -> JobOut:
    return JobOut(**vars(job))


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
    if file is not None:
        saved = await save_upload(file, ingest.uploads_folder(state), state.config.max_upload_bytes)
        return job_out(ingest.ingest_upload(state, saved, file.filename, user_fields, video_id))
    return job_out(ingest.ingest_path(state, path, user_fields, video_id))


@router.get("/videos/{video_id}", response_model=VideoOut, dependencies=[Depends(require_read_key)])
def get_video(video_id: int, state: ServiceState = Depends(get_state)) -> VideoOut:
    record = state.store.get_video(video_id)
    if record is None:
        raise HTTPException(404, f"no video with id {video_id}")
    return VideoOut(id=record.id, path=record.path, duration=record.duration, fields=record.fields,
                    segments=[SegmentOut(start=s.start, end=s.end) for s in record.segments])


@router.delete("/videos/{video_id}", response_model=DeleteOut, dependencies=[Depends(require_write_key)])
def delete_video(video_id: int, state: ServiceState = Depends(get_state)) -> DeleteOut:
    ingest.delete_video(state, video_id)
    return DeleteOut(deleted=video_id)


@router.get("/jobs/{job_id}", response_model=JobOut, dependencies=[Depends(require_read_key)])
def get_job(job_id: str, state: ServiceState = Depends(get_state)) -> JobOut:
    job = state.jobs.get(job_id)
    if job is None:
        raise HTTPException(404, f"no job with id {job_id!r}")
    return job_out(job)
