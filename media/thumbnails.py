"""Small JPEG stills of a video at given times, for result lists and timelines."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable, Sequence

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


def thumbnail_taps(video: OpenedVideo, times: Sequence[float], folder: Path, max_side: int = 256
                   ) -> tuple[dict[int, Callable[[torch.Tensor], None]], list[Path]]:
    """What writes one JPEG per time (the frame shown then, named by the time in milliseconds) from frames decoded
    for something else: {frame index: write its stills}, and the paths, in the order of `times`. Pass the taps to
    `media.clips.stream_segments` so the video is decoded once for clips and thumbnails together."""
    indices = frame_indices_at(video, list(times))
    paths = [folder / f"{int(round(t * 1000)):09d}.jpg" for t in times]
    targets: dict[int, list[Path]] = {}
    for i, path in zip(indices, paths):
        targets.setdefault(i, []).append(path)

    def write(index: int, frame: torch.Tensor) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        still = shrink(frame, max_side).numpy()
        for path in targets[index]:
            write_image(path, still, codec="mjpeg")

    return {i: functools.partial(write, i) for i in targets}, paths


def write_thumbnails(src: VideoSource, times: Sequence[float], folder: Path, max_side: int = 256) -> list[Path]:
    """`thumbnail_taps` on a decode of their own: the video is decoded once, a frame at a time (a long video's many
    thumbnails never hold its full-size frames together)."""
    video = OpenedVideo(src, None)
    taps, paths = thumbnail_taps(video, times, folder, max_side)
    for i, frame in video.iter_frames(list(taps)):
        taps[i](frame)
    return paths
