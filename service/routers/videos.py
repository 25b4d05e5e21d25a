"""POST /videos (ingest as a background job), GET /videos (the library, paged), GET/DELETE /videos/{id}, the
video file (GET /videos/{id}/media, seekable) and its thumbnails, GET /jobs/{id}, GET /fields (the user fields
to filter on)."""
from __future__ import annotations

import asyncio
import json
import mimetypes
from pathlib import Path

from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import FileResponse

from index import VideoRecord
from index.records import MAX_FIELDS_BYTES
from service import ingest, thumbnails
from service.deps import get_state, require_read_key, require_write_key
from service.fields import describe_fields
from service.layout import layout
from service.library_pages import list_page
from service.schemas import MAX_ID, DeleteOut, FieldOut, FieldsOut, FieldValue, JobOut, VideoListOut, VideoOut
from service.state import ServiceState
from service.uploads import MAX_PATH_CHARS, save_upload

def video_id_param():  # each route's own parameter object
    return PathParam(ge=1, le=MAX_ID, description="a video's id")

router = APIRouter(tags=["videos"])


def job_out(job) -> JobOut:
    return JobOut(**vars(job))


def video_out(record: VideoRecord) -> VideoOut:
    middle = (record.duration or 0) / 2
    return VideoOut(id=record.id, title=record.title, duration=record.duration, created=record.created,
                    fields=record.fields, status="ready" if Path(record.path).is_file() else "missing_file",
                    thumbnail_url=thumbnails.url(record.id, middle), media_url=f"/videos/{record.id}/media",
                    segments=[{"start": s.start, "end": s.end} for s in record.segments])


def _parse_fields(text: str | None) -> dict:
    if not text:
        return {}
    try:
        fields = json.loads(text)
    except (ValueError, RecursionError) as err:  # also numbers past Python's digit limit, and deep nesting
        raise HTTPException(422, f"fields must be a JSON object: {str(err)[:200]}") from None
    if not isinstance(fields, dict):
        raise HTTPException(422, f"fields must be a JSON object, got {type(fields).__name__}")
    return fields


@router.post("/videos", status_code=202, response_model=JobOut, dependencies=[Depends(require_write_key)],
             summary="Add (or, with video_id, replace) a video: an upload or a path under the media root")
async def add_video(file: UploadFile | None = File(None, description="a video file"),
                    path: str | None = Form(None, max_length=MAX_PATH_CHARS,
                                            description="a file path relative to the media root"),
                    fields: str | None = Form(None, max_length=MAX_FIELDS_BYTES,
                                              description="user fields, a JSON object (title, caption, tags, ...: text "
                                                          "fields are searchable by keyword)"),
                    video_id: int | None = Form(None, ge=1, le=MAX_ID, description="replace this video (upsert)"),
                    state: ServiceState = Depends(get_state)) -> JobOut:
    if (file is None) == (path is None):
        raise HTTPException(422, "give exactly one of: a file upload or a path under the media root")
    user_fields = _parse_fields(fields)
    if file is not None:
        saved = await save_upload(file, layout(state.config).uploads, state.config.max_upload_bytes)
        job = await asyncio.to_thread(ingest.ingest_upload, state, saved, file.filename, user_fields, video_id)
    else:
        job = await asyncio.to_thread(ingest.ingest_path, state, path, user_fields, video_id)
    return job_out(job)


@router.get("/videos", response_model=VideoListOut, dependencies=[Depends(require_read_key)],
            summary="The library, a page at a time, filtered and sorted")
def list_videos(k: int = Query(20, ge=1, description="videos per page"),
                page_token: str | None = Query(None, max_length=512),
                filters: str | None = Query(None, max_length=2048, description="a JSON object, as in POST /search"),
                sort: str = Query("video_id", max_length=70, description="created, duration, title or video_id; "
                                                                         "a leading - sorts descending"),
                state: ServiceState = Depends(get_state)) -> VideoListOut:
    records, total, token = list_page(state, k, page_token, filters, sort)
    return VideoListOut(videos=[video_out(r) for r in records], total=total, next_page_token=token)


@router.get("/fields", response_model=FieldsOut, dependencies=[Depends(require_read_key)],
            summary="The library's user fields with their types and most frequent values, to build filters")
def list_fields(state: ServiceState = Depends(get_state)) -> FieldsOut:
    summaries, sampled = describe_fields(state.library)
    return FieldsOut(fields=[FieldOut(name=f.name, type=f.type, videos=f.videos, distinct=f.distinct,
                                      values=[FieldValue(value=v, videos=n) for v, n in f.values])
                             for f in summaries], sampled=sampled, total=state.library.num_videos())


@router.get("/videos/{video_id}", response_model=VideoOut, dependencies=[Depends(require_read_key)])
def get_video(video_id: int = video_id_param(), state: ServiceState = Depends(get_state)) -> VideoOut:
    record = state.library.get_video(video_id)
    if record is None:
        raise HTTPException(404, f"no video with id {video_id}")
    return video_out(record)


@router.get("/videos/{video_id}/media", dependencies=[Depends(require_read_key)], response_class=FileResponse,
            summary="The video file; supports HTTP Range, so a player can seek in it")
def get_media(video_id: int = video_id_param(), state: ServiceState = Depends(get_state)) -> FileResponse:
    record = state.library.get_video(video_id)
    if record is None:
        raise HTTPException(404, f"no video with id {video_id}")
    path = Path(record.path)
    if not path.is_file():
        raise HTTPException(404, f"the file of video {video_id} is no longer on disk")
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=media_type, filename=f"video_{video_id}{path.suffix}",
                        content_disposition_type="inline")


@router.get("/videos/{video_id}/thumbnail", dependencies=[Depends(require_read_key)], response_class=FileResponse,
            summary="A JPEG still of the video near t seconds (the middle when t is left out)")
def get_thumbnail(video_id: int = video_id_param(), t: float | None = Query(None, ge=0, le=1e7),
                  state: ServiceState = Depends(get_state)) -> FileResponse:
    path = thumbnails.nearest(state.config, video_id, t)
    if path is None:
        raise HTTPException(404, f"no thumbnail for video {video_id}")
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})


@router.delete("/videos/{video_id}", response_model=DeleteOut, dependencies=[Depends(require_write_key)])
def delete_video(video_id: int = video_id_param(), state: ServiceState = Depends(get_state)) -> DeleteOut:
    ingest.delete_video(state, video_id)
    return DeleteOut(deleted=video_id)


@router.get("/jobs/{job_id}", response_model=JobOut, dependencies=[Depends(require_read_key)])
def get_job(job_id: str = PathParam(max_length=64, description="the id of a POST /videos answer"),
            state: ServiceState = Depends(get_state)) -> JobOut:
    job = state.jobs.get(job_id)
    if job is None:
        raise HTTPException(404, f"no job with id {job_id}: job ids are the id field of a POST /videos answer, and "
                                 "a job's record is kept in this service's data dir")
    return job_out(job)
