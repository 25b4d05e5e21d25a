"""Decoders: decord first, PyAV as the fallback (``reader="decord"|"av"`` forces one); still images are one-frame
videos. ``OpenedVideo`` gives the metadata and decodes only the frames asked for."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from media.source import VideoDecodeError, VideoSource, open_source, rewind

READERS = ("decord", "av")


@dataclass(frozen=True)
class VideoMetadata:
    num_frames: int
    fps: float
    width: int
    height: int

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps if self.fps > 0 else 0.0


class _DecordVideo:
    def __init__(self, handle, name: str):
        import decord

        try:
            self._vr = decord.VideoReader(rewind(handle), num_threads=1)
        except Exception as exc:  # decord raises its own DECORDError / RuntimeError
            raise VideoDecodeError(name, f"decord could not open it ({_first_line(exc)})") from None
        self.name = name
        h, w = self._vr[0].shape[:2] if len(self._vr) else (0, 0)
        self.meta = VideoMetadata(len(self._vr), float(self._vr.get_avg_fps() or 0.0), int(w), int(h))

    def frames(self, indices: Sequence[int]) -> np.ndarray:
        try:
            return self._vr.get_batch(list(indices)).asnumpy()
        except Exception as exc:
            raise VideoDecodeError(self.name, f"decord failed reading frames ({_first_line(exc)})") from None


class _AVVideo:
    """PyAV: the frame count comes from the stream header (or a packet count), then only the frames asked
    for are kept while decoding, so long videos do not sit in memory."""

    def __init__(self, handle, name: str):
        import av

        self.name = name
        self._handle = handle
        try:
            with av.open(rewind(handle)) as container:
                if not container.streams.video:
                    raise VideoDecodeError(name, "no video stream")
                stream = container.streams.video[0]
                rate = stream.average_rate or stream.guessed_rate
                fps = float(rate) if rate else 0.0
                vlen = stream.frames or sum(1 for p in container.demux(stream) if p.size)
                self.meta = VideoMetadata(int(vlen), fps, stream.codec_context.width, stream.codec_context.height)
        except VideoDecodeError:
            raise
        except Exception as exc:
            raise VideoDecodeError(name, f"PyAV could not open it ({_first_line(exc)})") from None
        if self.meta.num_frames == 0:
            raise VideoDecodeError(name, "no frames")

    def frames(self, indices: Sequence[int]) -> np.ndarray:
        import av

        wanted = sorted(set(indices))
        last = wanted[-1]
        got: dict[int, np.ndarray] = {}
        try:
            with av.open(rewind(self._handle)) as container:
                for i, frame in enumerate(container.decode(video=0)):
                    if i in wanted:
                        got[i] = frame.to_ndarray(format="rgb24")
                    if i >= last:
                        break
        except Exception as exc:
            if not got:
                raise VideoDecodeError(self.name, f"PyAV failed decoding ({_first_line(exc)})") from None
        missing = [i for i in wanted if i not in got]
        if missing:
            raise VideoDecodeError(self.name, f"truncated: frame {missing[0]} of {self.meta.num_frames} could not be decoded")
        return np.stack([got[i] for i in indices])


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _read_image(handle, name: str) -> np.ndarray:
    import av

    try:
        with av.open(rewind(handle)) as container:
            frame = next(container.decode(video=0))
            return frame.to_ndarray(format="rgb24")[None]
    except StopIteration:
        raise VideoDecodeError(name, "image has no frame") from None
    except Exception as exc:
        raise VideoDecodeError(name, f"PyAV could not decode the image ({_first_line(exc)})") from None


def _open_video(handle, name: str, reader: str | None):
    if reader == "av":
        return _AVVideo(handle, name)
    try:
        video = _DecordVideo(handle, name)
        if video.meta.num_frames > 0:
            return video
        if reader == "decord":
            raise VideoDecodeError(name, "decord found no frames")
    except ImportError:
        if reader == "decord":
            raise
    except VideoDecodeError:
        if reader == "decord":
            raise
    return _AVVideo(handle, name)


class OpenedVideo:
    """A decoded-on-demand video or image: ``meta`` plus ``frames(indices) -> (T, H, W, 3) uint8``."""

    def __init__(self, src: VideoSource, reader: str | None):
        if reader not in (None, *READERS):
            raise ValueError(f"reader must be one of {READERS} or None, got {reader!r}")
        handle, self.name, is_image = open_source(src)
        self._handle, self._reader = handle, reader
        if is_image:
            pixels = _read_image(handle, self.name)
            self._image = pixels
            self.meta = VideoMetadata(1, 1.0, pixels.shape[2], pixels.shape[1])
        else:
            self._image = None
            self._video = _open_video(handle, self.name, reader)
            self.meta = self._video.meta

    def frames(self, indices: Sequence[int]) -> torch.Tensor:
        bad = [i for i in indices if not 0 <= i < self.meta.num_frames]
        if bad:
            raise IndexError(f"frame index {bad[0]} out of range for {self.name} ({self.meta.num_frames} frames)")
        if self._image is not None:
            return torch.from_numpy(np.repeat(self._image, len(indices), axis=0))
        try:
            frames = self._video.frames(indices)
        except VideoDecodeError:
            if self._reader is not None or isinstance(self._video, _AVVideo):
                raise
            # decord opens some files it then cannot copy out (e.g. widths it pads); PyAV reads them
            self._video = _AVVideo(self._handle, self.name)
            frames = self._video.frames(indices)
        return torch.from_numpy(np.ascontiguousarray(frames))


def video_metadata(src: VideoSource, reader: str | None = None) -> VideoMetadata:
    return OpenedVideo(src, reader).meta


def video_duration(src: VideoSource, reader: str | None = None) -> float:
    """Seconds (frames / average fps); 1 s for a still image."""
    return video_metadata(src, reader).duration
