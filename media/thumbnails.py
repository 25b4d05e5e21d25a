"""Small JPEG stills of a video at given times, for result lists and timelines."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from media.clips import read_frames_at
from media.source import VideoSource
from media.writers import write_image


def shrink(frame: torch.Tensor, max_side: int) -> torch.Tensor:
    """(H, W, 3) uint8 -> at most `max_side` on its longer side, even sides (JPEG's 4:2:0), aspect kept."""
    h, w = frame.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    size = (max(2, int(h * scale) // 2 * 2), max(2, int(w * scale) // 2 * 2))
    if size == (h, w):
        return frame
    x = frame.permute(2, 0, 1)[None].float()
    out = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return out[0].round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0)


def write_thumbnails(src: VideoSource, times: Sequence[float], folder: Path, max_side: int = 256) -> list[Path]:
    """One JPEG per time (the frame shown then), named by the time in milliseconds; the video is decoded once."""
    folder.mkdir(parents=True, exist_ok=True)
    frames = read_frames_at(src, timestamps=list(times))
    paths = []
    for t, frame in zip(times, frames):
        path = folder / f"{int(round(t * 1000)):09d}.jpg"
        write_image(path, shrink(frame, max_side).numpy(), codec="mjpeg")
        paths.append(path)
    return paths
