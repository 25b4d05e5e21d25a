"""Model-ready clips: decode, sample by the official rule, transform. A long video's windows are decoded in one
pass front to back, streamed with bounded memory (`stream_segments`)."""
from __future__ import annotations

import math
import random
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch

from media.readers import OpenedVideo, VideoMetadata
from media.sampling import get_frame_indices, trimmed_length
from media.source import VideoSource
from media.transforms import test_transform, train_transform


def read_frames_at(src: VideoSource, timestamps: Sequence[float] | None = None,
                   index_range: tuple[int, int] | None = None, reader: str | None = None) -> torch.Tensor:
    """Raw frames, (T, H, W, 3) uint8: the frame shown at each timestamp (seconds), or every frame of
    ``index_range = (start, stop)`` (stop excluded, clipped to the video)."""
    if (timestamps is None) == (index_range is None):
        raise ValueError("give exactly one of timestamps or index_range")
    video = OpenedVideo(src, reader)
    n = video.meta.num_frames
    if timestamps is not None:
        indices = frame_indices_at(video, timestamps)
    else:
        start, stop = max(0, int(index_range[0])), min(n, int(index_range[1]))
        if start >= stop:
            raise ValueError(f"index_range {tuple(index_range)} selects no frame of {video.name} ({n} frames)")
        indices = list(range(start, stop))
    return video.frames(indices)


def frame_indices_at(video: OpenedVideo, timestamps: Sequence[float]) -> list[int]:
    """The index of the frame shown at each timestamp (seconds)."""
    if len(timestamps) == 0:
        raise ValueError("timestamps is empty")
    n, fps = video.meta.num_frames, video.meta.fps or 1.0
    return [min(n - 1, max(0, int(math.floor(t * fps)))) for t in timestamps]


def load_video(src: VideoSource, num_frames: int = 8, sample: str = "middle", size: int = 224,
               trimmed30: bool = False, train: bool = False, reader: str | None = None,
               generator: torch.Generator | None = None, rng: random.Random | None = None) -> torch.Tensor:
    """Decode, sample ``num_frames`` by the official rule and transform -> (T, 3, size, size) float32."""
    video = OpenedVideo(src, reader)
    vlen = video.meta.num_frames
    if trimmed30:
        vlen = trimmed_length(vlen, video.meta.fps)
    frames = video.frames(get_frame_indices(num_frames, vlen, sample, rng=rng)).permute(0, 3, 1, 2)
    return train_transform(frames, size, generator) if train else test_transform(frames, size)


def window_frame_indices(meta: VideoMetadata, windows: Sequence[tuple[float, float]],
                         num_frames: int) -> list[list[int]]:
    """The frames test-time sampling (interval middles) picks inside each ``(start, end)`` window in seconds."""
    n, fps = meta.num_frames, meta.fps or 1.0
    per_window = []
    for start, end in windows:
        first = min(n - 1, max(0, int(math.floor(start * fps))))
        stop = min(n, max(first + 1, int(math.ceil(end * fps))))
        per_window.append([first + i for i in get_frame_indices(num_frames, stop - first, "middle")])
    return per_window


def stream_segments(video: OpenedVideo, windows: Sequence[tuple[float, float]], num_frames: int = 8,
                    size: int = 224, taps: Mapping[int, Callable[[torch.Tensor], None]] | None = None
                    ) -> Iterator[torch.Tensor]:
    """Each window's (T, 3, size, size) clip, in window order, from one pass over the video front to back; a clip
    is yielded as soon as its last frame is decoded. Each frame is resized as it is decoded and kept only while a
    window not yet yielded needs it, so memory does not grow with the video's length. ``taps`` maps a frame index
    to a function called with that raw (H, W, 3) uint8 frame (thumbnails from the same pass)."""
    if not windows:
        raise ValueError("windows is empty")
    taps = taps or {}
    per_window = window_frame_indices(video.meta, windows, num_frames)
    last_user = {i: k for k, idx in enumerate(per_window) for i in idx}  # the last window each frame is sampled in
    ready_at = [max(idx) for idx in per_window]
    small: dict[int, torch.Tensor] = {}
    k = 0
    for i, frame in video.iter_frames(sorted(set(last_user) | set(taps))):
        if i in taps:
            taps[i](frame)
        if i in last_user:
            # uint8 -> float in numpy (same values, same layout): torch's cast fans one frame out over its intra-op
            # threads, which, with the encoder on the same cores, costs more than the cast (10 ms vs 0.4 ms at 360p)
            pixels = torch.from_numpy(frame.numpy().astype(np.float32)).permute(2, 0, 1)[None]
            small[i] = test_transform(pixels, size)[0]
        while k < len(per_window) and ready_at[k] <= i:
            yield torch.stack([small[j] for j in per_window[k]])
            for j in set(per_window[k]):
                if last_user[j] == k:
                    del small[j]
            k += 1


def load_segments(src: VideoSource, windows: Sequence[tuple[float, float]], num_frames: int = 8, size: int = 224,
                  reader: str | None = None) -> torch.Tensor:
    """Test-time sampling (interval middles) inside each ``(start, end)`` window in seconds, decoding the
    video once -> (num_windows, T, 3, size, size). Pair with :func:`segment_windows` for long videos."""
    return torch.stack(list(stream_segments(OpenedVideo(src, reader), windows, num_frames, size)))


def load_segment(src: VideoSource, start: float, end: float, num_frames: int = 8, size: int = 224,
                 reader: str | None = None) -> torch.Tensor:
    """One window of :func:`load_segments` -> (T, 3, size, size)."""
    return load_segments(src, [(start, end)], num_frames, size, reader)[0]
