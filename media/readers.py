"""Decoders: decord first, PyAV as the fallback (``reader="decord"|"av"`` forces one); still images are one-frame
videos. ``OpenedVideo`` gives the metadata and decodes only the frames asked for, one at a time if asked
(``iter_frames``); ``probe`` reads what a file claims to be (frame size, count, rate, still or not) without decoding
any frame larger than a limit. Every decoder failure is a ``VideoDecodeError`` whose reason names no server path."""
from __future__ import annotations

import bisect
import os
import re
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from media.source import VideoDecodeError, VideoSource, open_source, rewind

READERS = ("decord", "av")
MAX_STREAMS = 16  # with a pixel limit, the streams it reaches (a video stream after these is refused)


@dataclass(frozen=True)
class VideoMetadata:
    num_frames: int
    fps: float
    width: int
    height: int
    still: bool = False  # a still image (PNG, JPEG, ...), not a video

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps if self.fps > 0 else 0.0


class _DecordVideo:
    def __init__(self, handle, name: str):
        import decord

        self.name, self._handle = name, handle
        try:  # decord raises its own DECORDError / RuntimeError, also for frame 0 of a damaged file
            self._vr = decord.VideoReader(rewind(handle), num_threads=1)
            h, w = self._vr[0].shape[:2] if len(self._vr) else (0, 0)
            self.meta = VideoMetadata(len(self._vr), float(self._vr.get_avg_fps() or 0.0), int(w), int(h))
        except Exception as exc:
            raise VideoDecodeError(name, f"decord could not open it ({_first_line(exc, handle)})") from None

    def iter_frames(self, wanted: list[int]) -> Iterator[tuple[int, np.ndarray]]:
        for i in wanted:
            try:
                frame = self._vr.get_batch([i]).asnumpy()[0]
            except Exception as exc:
                raise VideoDecodeError(self.name, f"decord failed reading frames ({_first_line(exc, self._handle)})") \
                    from None
            yield i, frame


class _AVVideo:
    """PyAV: the frame count comes from the stream header (or a packet count), then only the frames asked
    for are kept while decoding, so long videos do not sit in memory. Frames that are neither asked for nor
    referenced by another frame (most B-frames) are not decoded at all (`_presentation_pts`)."""

    def __init__(self, handle, name: str):

        self.name = name
        self._handle = handle
        self.meta = _header(handle, name, "PyAV could not open it")
        if self.meta.num_frames == 0:
            raise VideoDecodeError(name, "no frames")
        self.decoded = 0  # frames the decoder has produced so far (what skipping saves shows here)

    def iter_frames(self, wanted: list[int]) -> Iterator[tuple[int, np.ndarray]]:
        if not wanted:
            return
        try:
            pts = _presentation_pts(self._handle, self.meta.num_frames) if len(wanted) < self.meta.num_frames \
                else None
            if pts is not None:
                done = 0
                try:
                    for i, frame in self._decode(wanted, pts):
                        yield i, frame
                        done += 1
                    return
                except _NotOneFramePerPacket:
                    wanted = wanted[done:]
            yield from self._decode(wanted, None)
        except VideoDecodeError:
            raise
        except Exception as exc:
            raise VideoDecodeError(self.name, f"PyAV failed decoding ({_first_line(exc, self._handle)})") from None

    def _decode(self, wanted: list[int], pts: list[int] | None) -> Iterator[tuple[int, np.ndarray]]:
        """The frames of `wanted`, from the start of the file; with `pts` (`_presentation_pts`) each packet whose
        frame is not wanted may be dropped unless another frame references it (`skip_frame`, set per packet
        before it is sent) and a frame's index is the rank of its pts; without, every frame is decoded and its
        index is its place in the decoder's output."""
        import av

        pending = iter(wanted)
        target = next(pending, None)
        with av.open(rewind(self._handle)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "SLICE"  # frame threading would decode packets out of the order skip_frame is set in
            frames = _skipping(container, stream, wanted, pts) if pts is not None else \
                enumerate(container.decode(stream))
            for i, frame in frames:
                self.decoded += 1
                if i == target:
                    yield i, frame.to_ndarray(format="rgb24")
                    target = next(pending, None)
                    if target is None:
                        return
        raise VideoDecodeError(self.name, f"truncated: frame {target} of {self.meta.num_frames} could not be "
                                          "decoded")


class _NotOneFramePerPacket(Exception):
    """A decoded frame's pts is no packet's: pts ranks are not frame indices for this file."""


def _presentation_pts(handle, num_frames: int) -> list[int] | None:
    """Every frame's pts in presentation order, from a demux-only pass (no decoding, a few % of a decode's time):
    the index of the frame a packet holds is the rank of its pts, known before the packet is decoded (B-frames
    come out of order). None when that rank cannot be trusted to be the index a full decode gives (a packet
    without pts, two with one, or not one packet a frame): then every frame is decoded. Holds one int a frame."""
    import av

    with av.open(rewind(handle)) as container:
        pts = [packet.pts for packet in container.demux(video=0) if packet.size]
    if len(pts) != num_frames or None in pts or len(set(pts)) != len(pts):
        return None
    return sorted(pts)


def _skipping(container, stream, wanted: list[int], pts: list[int]) -> Iterator[tuple[int, object]]:
    """(index, frame) for what the decoder produces when non-reference frames are dropped unless wanted."""
    index = {pts[i]: i for i in wanted}
    codec = stream.codec_context
    for packet in container.demux(stream):
        codec.skip_frame = "DEFAULT" if packet.pts is None or packet.pts in index else "NONREF"
        for frame in packet.decode():
            i = bisect.bisect_left(pts, frame.pts) if frame.pts is not None else len(pts)
            if i == len(pts) or pts[i] != frame.pts:
                raise _NotOneFramePerPacket()
            yield i, frame


def _header(handle, name: str, failure: str, max_pixels: int = 0) -> VideoMetadata:
    """What the container and codec headers say; with `max_pixels` the decoder refuses any larger frame, so even a
    still (whose size is only known by decoding it) costs no more than that."""
    import av

    options = [{"max_pixels": str(max_pixels)}] * MAX_STREAMS if max_pixels else None
    try:
        with av.open(rewind(handle), stream_options=options) as container:
            if not container.streams.video:
                raise VideoDecodeError(name, "no video stream")
            stream = container.streams.video[0]
            if options and stream.index >= MAX_STREAMS:
                raise VideoDecodeError(name, f"its video is stream {stream.index}; only the first {MAX_STREAMS} "
                                             "streams are read")
            rate = stream.average_rate or stream.guessed_rate
            fps = float(rate) if rate else 0.0
            still = container.format.name == "image2" or container.format.name.endswith("_pipe")
            vlen = 1 if still else stream.frames or sum(1 for p in container.demux(stream) if p.size)
            return VideoMetadata(int(vlen), fps, stream.codec_context.width, stream.codec_context.height, still)
    except VideoDecodeError:
        raise
    except Exception as exc:
        raise VideoDecodeError(name, f"{failure} ({_first_line(exc, handle)})") from None


_DECORD_LOCATION = re.compile(r"\[[\d:]+\] \S+:\d+: ")  # "[12:00:00] /src/video/reader.cc:83: "


def _first_line(exc: Exception, handle) -> str:
    """The first line of a decoder's message, without its source location or the file's path on this server."""
    lines = str(exc).strip().splitlines()
    text = _DECORD_LOCATION.sub("", lines[0]) if lines else ""
    if isinstance(handle, str):
        text = text.replace(handle, os.path.basename(handle))
    return f"{type(exc).__name__}: {text}"


def _read_image(handle, name: str) -> np.ndarray:
    import av

    try:
        with av.open(rewind(handle)) as container:
            frame = next(container.decode(video=0))
            return frame.to_ndarray(format="rgb24")[None]
    except StopIteration:
        raise VideoDecodeError(name, "image has no frame") from None
    except Exception as exc:
        raise VideoDecodeError(name, f"PyAV could not decode the image ({_first_line(exc, handle)})") from None


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
            self.meta = VideoMetadata(1, 1.0, pixels.shape[2], pixels.shape[1], still=True)
        else:
            self._image = None
            self._video = _open_video(handle, self.name, reader)
            self.meta = self._video.meta

    def frames(self, indices: Sequence[int]) -> torch.Tensor:
        """(T, H, W, 3) uint8, in the order of `indices` (repeats allowed)."""
        got = dict(self.iter_frames(indices))
        return torch.stack([got[i] for i in indices])

    def iter_frames(self, indices: Sequence[int]) -> Iterator[tuple[int, torch.Tensor]]:
        """(index, (H, W, 3) uint8) for each distinct index in ascending order, decoded one at a time, so a caller
        that shrinks each frame holds one full-size frame at once; a frame larger than the first is refused."""
        bad = [i for i in indices if not 0 <= i < self.meta.num_frames]
        if bad:
            raise IndexError(f"frame index {bad[0]} out of range for {self.name} ({self.meta.num_frames} frames)")
        wanted = sorted(set(indices))
        if self._image is not None:
            for i in wanted:
                yield i, torch.from_numpy(self._image[0])
            return
        done = 0
        try:
            for i, frame in self._video.iter_frames(wanted):
                yield i, self._checked(frame, i)
                done += 1
        except VideoDecodeError:
            if self._reader is not None or isinstance(self._video, _AVVideo):
                raise
            # decord opens some files it then cannot copy out (e.g. widths it pads); PyAV reads them
            self._video = _AVVideo(self._handle, self.name)
            for i, frame in self._video.iter_frames(wanted[done:]):
                yield i, self._checked(frame, i)

    def _checked(self, frame: np.ndarray, index: int) -> torch.Tensor:
        h, w = frame.shape[:2]
        if h * w > self.meta.width * self.meta.height:
            raise VideoDecodeError(self.name, f"frame {index} is {w}x{h}, larger than the {self.meta.width}x"
                                              f"{self.meta.height} the video starts with")
        return torch.from_numpy(np.ascontiguousarray(frame))


def video_metadata(src: VideoSource, reader: str | None = None) -> VideoMetadata:
    return OpenedVideo(src, reader).meta


def video_duration(src: VideoSource, reader: str | None = None) -> float:
    """Seconds (frames / average fps); 1 s for a still image."""
    return video_metadata(src, reader).duration


def probe(src: VideoSource, max_pixels: int = 0) -> VideoMetadata:
    """What a file says it is (frame count, rate, frame size, still or not) from its headers, decoding no frame of
    more than `max_pixels` (0: no limit); `VideoDecodeError` when that cannot be read. Stills count one frame."""
    handle, name, _ = open_source(src)
    meta = _header(handle, name, "not a video or image PyAV can open", max_pixels)
    if meta.width * meta.height == 0:
        raise VideoDecodeError(name, "its frame size cannot be read" + (
            f" without decoding a frame of more than {max_pixels} pixels (damaged, or too large)" if max_pixels
            else ""))
    if meta.num_frames == 0:
        raise VideoDecodeError(name, "no frames")
    return meta
