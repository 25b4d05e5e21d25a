"""Writing H.264 MP4 videos and PNG/JPEG stills through PyAV (the synthetic corpus and thumbnails)."""
from __future__ import annotations

import os
from fractions import Fraction
from typing import BinaryIO, Iterable

import numpy as np
import torch


def write_video(dst: str | os.PathLike | BinaryIO, frames: np.ndarray | torch.Tensor | Iterable[np.ndarray],
                fps: float = 8.0, crf: int = 18) -> None:
    """(T, H, W, 3) uint8 RGB -> H.264 yuv420p MP4 (even H and W, as yuv420p needs). `frames` may also be an
    iterable of such arrays, written one after another, so a long video never sits in memory whole."""
    import av

    chunks = [_checked_frames(frames)] if isinstance(frames, (np.ndarray, torch.Tensor)) else frames
    with av.open(dst, mode="w", format="mp4") as container:
        stream = None
        for chunk in chunks:
            chunk = _checked_frames(chunk)
            if stream is None:
                stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
                stream.width, stream.height = chunk.shape[2], chunk.shape[1]
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": str(crf), "preset": "veryfast", "tune": "zerolatency"}
            for frame in chunk:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        if stream is None:
            raise ValueError("no frames to write")
        container.mux(stream.encode())


def _checked_frames(frames) -> np.ndarray:
    frames = frames.numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    if frames.shape[1] % 2 or frames.shape[2] % 2:
        raise ValueError(f"H and W must be even for yuv420p, got {frames.shape[1]}x{frames.shape[2]}")
    return frames


def write_image(dst: str | os.PathLike | BinaryIO, frame: np.ndarray, codec: str = "png") -> None:
    """(H, W, 3) uint8 RGB -> a PNG (``codec="png"``) or JPEG (``"mjpeg"``) still, through PyAV."""
    import av

    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frame must be (H, W, 3) uint8, got {frame.shape} {frame.dtype}")
    pix_fmt = {"png": "rgb24", "mjpeg": "yuvj420p"}.get(codec)
    if pix_fmt is None:
        raise ValueError(f"codec must be 'png' or 'mjpeg', got {codec!r}")
    with av.open(dst, mode="w", format="image2pipe") as container:
        stream = container.add_stream(codec)
        stream.width, stream.height, stream.pix_fmt = frame.shape[1], frame.shape[0], pix_fmt
        picture = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format=pix_fmt)
        container.mux(stream.encode(picture))
        container.mux(stream.encode())
