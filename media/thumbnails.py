"""Small JPEG stills of a video at given times, for result lists and timelines."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from media.clips import frame_indices_at
from media.readers import OpenedVideo
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
    """One JPEG per time (the frame shown then), named by the time in milliseconds; the video is decoded once, a
    frame at a time (a long video's many thumbnails never hold its full-size frames together)."""
    folder.mkdir(parents=True, exist_ok=True)
    video = OpenedVideo(src, None)
    indices = frame_indices_at(video, list(times))
    paths = {}
    for i, frame in video.iter_frames(indices):
        still = shrink(frame, max_side).numpy()
        for t, j in zip(times, indices):
            if j == i:
                paths[t] = folder / f"{int(round(t * 1000)):09d}.jpg"
                write_image(paths[t], still, codec="mjpeg")
    return [paths[t] for t in times]
