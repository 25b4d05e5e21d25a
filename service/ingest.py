"""Adding videos to the library: admit the file (the probe's limits, user fields that can be served back, a video id
that exists when one is replaced, content the library does not hold yet), queue a job that embeds its segments and
stores them, and clean up what the service itself received when anything fails. The POST /videos route, the
embedded demo library, the --library folder (service.folder_watch), reindex and bulk import all ingest through here.

Progress: a job body reports the fraction done after every batch of windows (GET /jobs/{id}); a caller that
submits many files (bulk import, the library folder) follows `Job.status` for its own count, shown as a tqdm bar
on a terminal (off with --no-progress, as every long command does) and as numbers in /healthz for the service.

Files the service received as uploads live in its uploads folder and belong to the one video made from each: they
are removed with that video, when it is replaced by another file, and when its ingestion fails. Files under the
media root are the user's and are never removed."""
from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

from index import NewVideo, VideoRecord, check_fields, check_title
from media import VideoDecodeError
from service import thumbnails, window_tokens
from service.errors import BadRequest, Duplicate, NotFound, Overloaded, ServiceError, Unprocessable
from service.jobs import Job
from service.layout import layout
from service.state import ServiceState
from service.uploads import client_name, file_digest, probe, resolve_media_path

log = logging.getLogger(__name__)

TITLE_CHARS = 200


def submit(state: ServiceState, path: Path, fields: dict, video_id: int | None, kind: str, source: str,
           content_hash: str | None = None) -> Job:
    """Queue the embedding of `path` (already admitted); the job stores the video and returns its id.

    An upload (kind "upload") whose job fails or is refused by a full queue is removed again.
    """
    name = f"{kind} {source!r}"
    title = str(fields.get("title") or fields.get("filename") or path.stem)[:TITLE_CHARS]

    def body(progress: Callable[[float], None]) -> int:
        try:
            vid, replaced = store(state, path, fields, title, video_id, content_hash, progress)
        except Exception as err:
            if kind == "upload":
                path.unlink(missing_ok=True)
            raise job_error(err, name) from None
        if replaced is not None and replaced.path != str(path):
            remove_upload(state, replaced.path)
        return vid

    try:
        return state.jobs.submit(kind, source, body)
    except Overloaded:
        if kind == "upload":
            path.unlink(missing_ok=True)
        raise


def store(state: ServiceState, path: Path, fields: dict, title: str, video_id: int | None, content_hash: str | None,
          progress: Callable[[float], None]) -> tuple[int, VideoRecord | None]:
    """Embed `path`, make its thumbnails from the same decoding pass (and keep its window tokens for rerank) and
    store it (replacing `video_id`): its id and the record it replaced; a failure leaves no thumbnail behind. The
    duplicate check is repeated here, where jobs run one at a time, so two uploads of one file at once still make one
    video."""
    cfg = state.config
    keep_tokens = window_tokens.enabled(cfg, state.embedder)
    pending = thumbnails.pending_folder(cfg)
    try:
        emb = state.embedder.embed_video(path, cfg.segment_window, cfg.segment_stride,
                                         progress=lambda done, total: progress(0.95 * done / total),
                                         with_tokens=keep_tokens, frame_taps=thumbnails.window_taps(cfg, pending))
        if content_hash is not None:
            refuse_duplicate(state, content_hash, video_id)
        replaced = state.library.get_video(video_id) if video_id is not None else None
        vid = state.library.add_videos([NewVideo(str(path), emb.duration, emb.spans, emb.vectors, fields, title,
                                                 video_id, content_hash)])[0]
    except BaseException:
        shutil.rmtree(pending, ignore_errors=True)
        raise
    thumbnails.finalize(cfg, pending, vid)
    if keep_tokens:
        window_tokens.save(cfg, vid, emb.tokens)
    else:
        window_tokens.remove(cfg, vid)  # a replaced video's tokens must not outlive it
    return vid, replaced


def job_error(err: Exception, name: str) -> Exception:
    """What a failed job reports: a refusal as it is, a decoder's reason, never a server path or a traceback."""
    if isinstance(err, ServiceError):
        return err
    if isinstance(err, VideoDecodeError):
        return BadRequest(f"{name} is not a decodable video: {err.reason}")
    if isinstance(err, KeyError):  # the video to replace was deleted meanwhile
        return NotFound(str(err.args[0]) if err.args else "no such video")
    log.error("ingesting %s failed", name, exc_info=err)
    return RuntimeError(f"ingesting {name} failed on an internal error; the service log has the details")


def admit_fields(fields: dict, filename: str | None = None) -> dict:
    """User fields that can be stored and served back (index.records.check_fields), with the file name added."""
    if filename is not None:
        fields = {**fields, "filename": fields.get("filename", filename)}
    try:
        check_fields(fields)
        check_title(str(fields.get("title") or "")[:TITLE_CHARS])
    except ValueError as err:
        raise Unprocessable(str(err)) from None
    return fields


def refuse_duplicate(state: ServiceState, content_hash: str, video_id: int | None) -> None:
    """The same content twice is one video: a file the library holds already is refused (409), naming the video
    (replacing that video with its own file is allowed)."""
    holder = state.library.find_by_hash(content_hash)
    if holder is not None and holder != video_id:
        raise Duplicate(f"this file is already video {holder} (GET /videos/{holder}); to replace that video, send "
                        f"video_id={holder}", headers={"Location": f"/videos/{holder}"})


def check_replaced(state: ServiceState, video_id: int | None) -> None:
    if video_id is not None and state.library.get_video(video_id) is None:
        raise NotFound(f"no video with id {video_id} to replace")


def ingest_upload(state: ServiceState, saved: Path, filename: str | None, fields: dict,
                  video_id: int | None) -> Job:
    """An upload already saved under the uploads folder: admitted, then queued; a refused file is removed."""
    shown = client_name(filename)
    try:
        fields = admit_fields(fields, shown)
        check_replaced(state, video_id)
        probe(saved, state.config, f"upload {shown!r}")
        digest = file_digest(saved)
        refuse_duplicate(state, digest, video_id)
    except BaseException:
        saved.unlink(missing_ok=True)
        raise
    return submit(state, saved, fields, video_id, "upload", shown, digest)


def ingest_path(state: ServiceState, relative: str, fields: dict, video_id: int | None) -> Job:
    """A file under the media root, admitted, then queued."""
    fields = admit_fields(fields)
    check_replaced(state, video_id)
    target = resolve_media_path(state.config, relative)
    shown = client_name(relative)
    probe(target, state.config, f"file {shown!r}")
    digest = file_digest(target)
    refuse_duplicate(state, digest, video_id)
    return submit(state, target, fields, video_id, "path", shown, digest)


def remove_upload(state: ServiceState, path: str) -> None:
    """Remove a file the service received as an upload; a file anywhere else (the media root) is left alone."""
    file = Path(path)
    if file.resolve().parent == layout(state.config).uploads.resolve():
        file.unlink(missing_ok=True)


def delete_video(state: ServiceState, video_id: int) -> None:
    """Remove a video from the library, its thumbnails, and its file when the service received it as an upload."""
    record = state.library.delete_video(video_id)
    if record is None:
        raise NotFound(f"no video with id {video_id}")
    thumbnails.remove(state.config, video_id)
    window_tokens.remove(state.config, video_id)
    remove_upload(state, record.path)
