"""Where video files come from: size-bounded uploads, paths confined to the media root, and the probe that admits
a file as a video (or a query image) before any work is queued for it: headers read with no frame decoded beyond
the pixel limit, every limit checked, then the first frame decoded."""
from __future__ import annotations

import hashlib
import os
import unicodedata
import uuid
from pathlib import Path

from fastapi import UploadFile

from media import IMAGE_EXTENSIONS, OpenedVideo, VideoDecodeError, VideoMetadata, probe as probe_headers
from service.config import ServiceConfig
from service.errors import BadRequest, Forbidden, NotFound, TooLarge, Unsupported
from service.layout import layout

CHUNK = 1 << 20
VIDEO_SUFFIXES = {".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v"}
MAX_PATH_CHARS = 4096  # Linux's PATH_MAX
MAX_NAME_CHARS = 255


def client_name(name: str | None, default: str = "upload") -> str:
    """A client's file name or path as the service repeats it (job sources, error messages, the filename field):
    printable, encodable, bounded; never a reason to refuse the file."""
    text = (name or "").encode("utf-8", "replace").decode("utf-8")
    text = "".join(c for c in text if unicodedata.category(c)[0] != "C")[:MAX_NAME_CHARS]
    return text or default


def resolve_media_path(config: ServiceConfig, relative: str) -> Path:
    """`relative` resolved inside the media root (symlinks followed); anything that escapes it or reaches the
    service's own files is refused (403), a path that cannot be resolved is a 400."""
    if not relative or "\x00" in relative:
        raise BadRequest("path is empty or contains a NUL byte")
    if len(relative) > MAX_PATH_CHARS:
        raise BadRequest(f"path is {len(relative)} characters long; the limit is {MAX_PATH_CHARS}")
    shown = client_name(relative)
    root = config.media_root.resolve()
    try:
        candidate = (root / relative).resolve()
        is_file = candidate.is_file()
    except RuntimeError:  # Python 3.11 names a symlink loop so
        raise BadRequest(f"path {shown!r} cannot be opened: a symlink loop") from None
    except OSError as err:  # too long a name, a loop, no permission, ...
        raise BadRequest(f"path {shown!r} cannot be opened: {err.strerror or type(err).__name__}") from None
    if not candidate.is_relative_to(root):
        raise Forbidden(f"path {shown!r} is outside the media root")
    if any(candidate.is_relative_to(d.resolve()) for d in layout(config).folders()):
        raise Forbidden(f"path {shown!r} is inside the service's own files, not the media root's videos")
    if not is_file:
        raise NotFound(f"no file {shown!r} under the media root")
    return candidate


async def save_upload(upload: UploadFile, folder: Path, max_bytes: int, allow_images: bool = False) -> Path:
    """Copy an upload into `folder` under a fresh name, refusing empty files (400) and files over `max_bytes` (413).
    The suffix is kept for known video (and, with `allow_images`, image) types: still images are read by it."""
    folder.mkdir(parents=True, exist_ok=True)
    suffix = Path(upload.filename or "").suffix.lower()
    known = VIDEO_SUFFIXES | (set(IMAGE_EXTENSIONS) if allow_images else set())
    target = folder.resolve() / f"{uuid.uuid4().hex}{suffix if suffix in known else '.bin'}"
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
            raise BadRequest(f"upload {client_name(upload.filename)!r} is empty")
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target


def probe(path: Path, config: ServiceConfig, name: str, still: bool = False) -> VideoMetadata:
    """A decodable video (or, with `still`, also an image) within the frame size, frame count and length limits,
    read from its headers before anything larger is decoded; a clear 400, 413 or 415 otherwise."""
    try:
        meta = probe_headers(path, config.max_frame_pixels)
    except VideoDecodeError as err:
        raise BadRequest(f"{name} is not a decodable video: {err.reason}") from None
    if meta.still and not still:
        raise Unsupported(f"{name} is a still image; the library holds videos (search by an image with POST "
                          "/search/file)")
    if meta.width * meta.height > config.max_frame_pixels:
        raise TooLarge(f"{name} has {meta.width}x{meta.height} frames; the limit is {config.max_frame_pixels} pixels "
                       "a frame")
    if meta.num_frames > config.max_video_frames:
        raise TooLarge(f"{name} has {meta.num_frames} frames; the limit is {config.max_video_frames}")
    if not meta.still and meta.duration <= 0:
        raise BadRequest(f"{name} has no frames or no frame rate")
    if meta.duration > config.max_video_seconds:
        raise TooLarge(f"{name} is {meta.duration:.0f} s long; the limit is {config.max_video_seconds:.0f} s")
    try:
        OpenedVideo(path, None).frames([0])  # headers can be well formed over damaged frames
    except VideoDecodeError as err:
        raise BadRequest(f"{name} is not a decodable video: {err.reason}") from None
    return meta


def file_digest(path: Path) -> str:
    """SHA-256 of a file's content."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
