"""Thumbnails of the library's videos: one small JPEG per indexed window (at its middle), made once at ingestion,
kept under `<data_dir>/thumbnails/<video id>/` and removed with the video."""
from __future__ import annotations

import shutil
import uuid
from pathlib import Path

from media import write_thumbnails
from service.config import ServiceConfig
from service.layout import layout


def make_pending(config: ServiceConfig, src: Path, spans: list[tuple[float, float]]) -> Path:
    """Thumbnails at each window's middle, in a folder of their own until the video has an id."""
    folder = layout(config).thumbnails / ".pending" / uuid.uuid4().hex
    try:
        write_thumbnails(src, [(s + e) / 2 for s, e in spans], folder, config.thumbnail_size)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder


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
