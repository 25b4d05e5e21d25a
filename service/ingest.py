"""Adding videos to the library: admit the file (probe), queue a job that embeds its segments and stores them,
and clean up what the service itself received when anything fails. The POST /videos route, the embedded demo
library, the --library folder (service.folder_watch) and bulk import all ingest through here.

Progress: a job body reports the fraction done after every batch of windows (GET /jobs/{id}); a caller that
submits many files (bulk import, the library folder) follows `Job.status` for its own count, shown as a tqdm bar
on a terminal (off with --no-progress, as every long command does) and as numbers in /healthz for the service."""
from __future__ import annotations

from pathlib import Path

import shutil

from index import NewVideo
from service import thumbnails, window_tokens
from service.errors import NotFound, Overloaded
from service.jobs import Job
from service.state import ServiceState
from service.uploads import probe, resolve_media_path


def submit(state: ServiceState, path: Path, fields: dict, video_id: int | None, kind: str, source: str) -> Job:
    """Queue the embedding of `path` (already probed); the job stores the video and returns its id.

    An upload (kind "upload") whose job fails or is refused by a full queue is removed again.
    """
    cfg = state.config
    keep_tokens = window_tokens.enabled(cfg, state.embedder)

    def body(progress) -> int:
        pending = None
        try:
            emb = state.embedder.embed_video(path, cfg.segment_window, cfg.segment_stride,
                                             progress=lambda done, total: progress(0.95 * done / total),
                                             with_tokens=keep_tokens)
            pending = thumbnails.make_pending(cfg, path, emb.spans)
            title = str(fields.get("title") or fields.get("filename") or path.stem)[:200]
            vid = state.library.add_videos([NewVideo(str(path), emb.duration, emb.spans, emb.vectors, fields,
                                                     title, video_id)])[0]
        except Exception:
            if pending is not None:
                shutil.rmtree(pending, ignore_errors=True)
            if kind == "upload":
                path.unlink(missing_ok=True)
            raise
        thumbnails.finalize(cfg, pending, vid)
        if keep_tokens:
            window_tokens.save(cfg, vid, emb.tokens)
        else:
            window_tokens.remove(cfg, vid)  # an upsert must not keep the replaced video's tokens
        return vid

    try:
        return state.jobs.submit(kind, source, body)
    except Overloaded:
        if kind == "upload":
            path.unlink(missing_ok=True)
        raise


def ingest_upload(state: ServiceState, saved: Path, filename: str | None, fields: dict,
                  video_id: int | None) -> Job:
    """An upload already saved under the uploads folder: probed, then queued; refused files are removed."""
    try:
        probe(saved, state.config.max_video_seconds, f"upload {filename!r}")
    except Exception:
        saved.unlink(missing_ok=True)
        raise
    fields.setdefault("filename", filename)
    return submit(state, saved, fields, video_id, "upload", filename or saved.name)


def ingest_path(state: ServiceState, relative: str, fields: dict, video_id: int | None) -> Job:
    """A file under the media root, probed, then queued."""
    target = resolve_media_path(state.config.media_root, relative)
    probe(target, state.config.max_video_seconds, f"file {relative!r}")
    return submit(state, target, fields, video_id, "path", relative)


def uploads_folder(state: ServiceState) -> Path:
    return state.config.media_root / "uploads"


def delete_video(state: ServiceState, video_id: int) -> None:
    """Remove a video from the library, and its file when the service itself received it as an upload."""
    record = state.library.delete_video(video_id)
    if record is None:
        raise NotFound(f"no video with id {video_id}")
    thumbnails.remove(state.config, video_id)
    window_tokens.remove(state.config, video_id)
    if Path(record.path).resolve().parent == uploads_folder(state).resolve():
        Path(record.path).unlink(missing_ok=True)
