"""Where a video comes from: a path, bytes or a binary file-like (an upload), and the one error every reader
raises for media that is missing, empty, truncated or undecodable."""
from __future__ import annotations

import io
import os
from typing import BinaryIO, Union

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

VideoSource = Union[str, os.PathLike, bytes, bytearray, BinaryIO]


class VideoDecodeError(RuntimeError):
    """A video (or image) that is missing, empty, truncated or undecodable."""

    def __init__(self, source: str, reason: str):
        super().__init__(f"cannot decode video {source}: {reason}")
        self.source = source
        self.reason = reason


def describe(src: VideoSource) -> str:
    if isinstance(src, (str, os.PathLike)):
        return repr(os.fspath(src))
    if isinstance(src, (bytes, bytearray)):
        return f"<{len(src)} bytes>"
    name = getattr(src, "name", None) or getattr(src, "filename", None)
    return repr(name) if isinstance(name, str) else f"<{type(src).__name__}>"


def open_source(src: VideoSource) -> tuple[str | io.BytesIO, str, bool]:
    """-> (path or in-memory buffer, description, is_image)."""
    name = describe(src)
    if isinstance(src, (str, os.PathLike)):
        path = os.fspath(src)
        if not os.path.exists(path):
            raise VideoDecodeError(name, "file not found")
        if os.path.isdir(path):
            raise VideoDecodeError(name, "is a directory, not a file")
        if os.path.getsize(path) == 0:
            raise VideoDecodeError(name, "empty file (0 bytes)")
        return path, name, path.lower().endswith(IMAGE_EXTENSIONS)
    if isinstance(src, (bytes, bytearray)):
        data = bytes(src)
    elif hasattr(src, "read"):
        start = src.tell() if hasattr(src, "seek") else None
        data = src.read()
        if start is not None:
            src.seek(start)
        if not isinstance(data, (bytes, bytearray)):
            raise VideoDecodeError(name, "file-like object must be opened in binary mode")
    else:
        raise TypeError(f"video source must be a path, bytes or a binary file-like, got {type(src).__name__}")
    if not data:
        raise VideoDecodeError(name, "empty input (0 bytes)")
    return io.BytesIO(data), name, looks_like_image(data[:16])


def looks_like_image(head: bytes) -> bool:
    return head.startswith((b"\xff\xd8\xff", b"\x89PNG", b"BM")) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def rewind(handle):
    if isinstance(handle, io.BytesIO):
        handle.seek(0)
    return handle
