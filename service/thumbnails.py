"""Thumbnails of the library's videos: one small JPEG per indexed window (at its middle), made once at ingestion,
kept under `<data_dir>/thumbnails/<video id>/` and removed with the video."""
from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from media import OpenedVideo, thumbnail_taps
from service.config import ServiceConfig
from service.layout import layout


def pending_folder(config: ServiceConfig) -> Path:
    """A folder of their own for a video's thumbnails until the video has an id (made when the first is written)."""
    return layout(config).thumbnails / ".pending" / uuid.uuid4().hex


def window_taps(config: ServiceConfig, folder: Path) -> Callable[[OpenedVideo, list[tuple[float, float]]], dict]:
    """`frame_taps` for `Embedder.embed_video`: a thumbnail at each window's middle into `folder`, written from the
    frames the embedding decodes (the video is not decoded a second time)."""
    def taps(video: OpenedVideo, spans: list[tuple[float, float]]) -> dict:
        return thumbnail_taps(video, [(s + e) / 2 for s, e in spans], folder, config.thumbnail_size)[0]

    return taps


def finalize(config: ServiceConfig, pending: Path, video_id: int) -> None:
    """Move pending thumbnails to the video's folder (replacing an upserted video's old ones)."""
    target = layout(config).thumbnails / str(video_id)
    if target.exists():
        shutil.rmtree(target)
    pending.rename(target)


def remove(config: ServiceConfig, video_id: int) -> None:
    shutil.rmtree(layout(config).thumbnails / str(video_id), ignore_errors=True)


def nearest(config: ServiceConfig, video_id: int, seconds: float | None) -> Path | None:
    """The video's thumbnail closest to `seconds` (the middle one when None); None when it has none."""
    stills = sorted((layout(config).thumbnails / str(video_id)).glob("*.jpg"))
    if not stills:
        return None
    if seconds is None:
        return stills[len(stills) // 2]
    return min(stills, key=lambda p: abs(int(p.stem) / 1000 - seconds))


def url(video_id: int, seconds: float) -> str:
    return f"/videos/{video_id}/thumbnail?t={seconds:.2f}"
