"""Where video files come from: size-bounded uploads, paths confined to the media root, and the probe that admits
a file as a video before any work is queued for it."""
from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

from fastapi import UploadFile

from media import IMAGE_EXTENSIONS, VideoDecodeError, video_duration
from service.errors import BadRequest, Forbidden, NotFound, TooLarge

CHUNK = 1 << 20
VIDEO_SUFFIXES = {".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v"}


def resolve_media_path(media_root: Path, relative: str) -> Path:
    """`relative` resolved inside `media_root` (symlinks followed); anything that escapes it is refused (403)."""
    root = media_root.resolve()
    if not relative or "\x00" in relative:
        raise BadRequest("path is empty or contains a NUL byte")
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root):
        raise Forbidden(f"path {relative!r} is outside the media root")
    if not candidate.is_file():
        raise NotFound(f"no file {relative!r} under the media root")
    return candidate


async def save_upload(upload: UploadFile, folder: Path, max_bytes: int, allow_images: bool = False) -> Path:
    """Copy an upload into `folder` under a fresh name, refusing empty files (400) and files over `max_bytes` (413).
    The suffix is kept for known video (and, with `allow_images`, image) types: still images are read by it."""
    folder.mkdir(parents=True, exist_ok=True)
    suffix = Path(upload.filename or "").suffix.lower()
    known = VIDEO_SUFFIXES | (set(IMAGE_EXTENSIONS) if allow_images else set())
    target = folder / f"{uuid.uuid4().hex}{suffix if suffix in known else '.bin'}"
    size = 0
    try:
        with open(target, "wb") as out:
            while chunk := await upload.read(CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise TooLarge(f"upload is larger than the limit of {max_bytes} bytes")
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if size == 0:
            raise BadRequest(f"upload {upload.filename!r} is empty")
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target


def probe(path: Path, max_seconds: float, name: str) -> float:
    """Duration of a decodable video no longer than `max_seconds`; clear 400/413 otherwise."""
    try:
        duration = video_duration(path)
    except VideoDecodeError as err:
        raise BadRequest(f"{name} is not a decodable video: {err.reason}") from None
    if duration <= 0:
        raise BadRequest(f"{name} has no frames")
    if duration > max_seconds:
        raise TooLarge(f"{name} is {duration:.0f} s long; the limit is {max_seconds:.0f} s")
    return duration


def file_digest(path: Path) -> str:
    """SHA-256 of a file's content."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
