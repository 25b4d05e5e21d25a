"""Video reading and the official frame sampling / transforms, in torch (no torchvision).

Every source is a path, ``bytes`` or a binary file-like (an upload). decord is tried first and PyAV is
the fallback (``reader="decord"|"av"`` forces one); still images (jpg/png/...) are one-frame videos.
Sampling follows the official ``get_frame_indices`` (split ``[0, vlen)`` into ``num_frames`` equal
intervals; ``rand`` draws inside each, ``middle`` takes its centre; short videos repeat the last index).
Transforms follow the official pipeline: train = one RandomResizedCrop(scale 0.5-1, bicubic) + flip
shared by all frames of a clip, test = bicubic resize to ``size x size``; then /255 and ImageNet
normalization. Anything that cannot be decoded raises :class:`VideoDecodeError` naming the source.
"""
from __future__ import annotations

import io
import math
import os
import random
from dataclasses import dataclass
from typing import BinaryIO, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
READERS = ("decord", "av")

VideoSource = Union[str, os.PathLike, bytes, bytearray, BinaryIO]


class VideoDecodeError(RuntimeError):
    """A video (or image) that is missing, empty, truncated or undecodable."""

    def __init__(self, source: str, reason: str):
        super().__init__(f"cannot decode video {source}: {reason}")
        self.source = source
        self.reason = reason


@dataclass(frozen=True)
class VideoMetadata:
    num_frames: int
    fps: float
    width: int
    height: int

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps if self.fps > 0 else 0.0


# ---------------------------------------------------------------------------------------------- sampling

def get_frame_indices(num_frames: int, vlen: int, sample: str = "rand", fix_start: int | None = None,
                      rng: random.Random | None = None) -> list[int]:
    """The official rule: ``num_frames`` equal intervals of ``[0, vlen)`` (bounds ``linspace(...).astype(int)``,
    each interval ``[a, b-1]``); ``rand`` picks ``randrange(a, b-1)`` per interval (a sorted random subset when
    an interval is too short), ``fix_start`` takes ``a + fix_start``, ``middle`` takes ``(a + b - 1) // 2``;
    padded with the last index up to ``num_frames`` when ``vlen < num_frames``."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if vlen < 1:
        raise ValueError(f"vlen must be >= 1, got {vlen}")
    if sample not in ("rand", "middle"):
        raise ValueError(f"sample must be 'rand' or 'middle', got {sample!r}")
    rng = rng or random
    acc = min(num_frames, vlen)
    bounds = np.linspace(0, vlen, acc + 1).astype(int)
    ranges = [(int(bounds[i]), int(bounds[i + 1]) - 1) for i in range(acc)]
    if sample == "rand":
        if all(b > a for a, b in ranges):
            indices = [rng.randrange(a, b) for a, b in ranges]
        else:
            indices = sorted(rng.sample(range(vlen), acc))
    elif fix_start is not None:
        indices = [a + fix_start for a, _ in ranges]
    else:
        indices = [(a + b) // 2 for a, b in ranges]
    return indices + [indices[-1]] * (num_frames - len(indices))


def trimmed_length(vlen: int, fps: float, seconds: float = 30.0) -> int:
    """``trimmed30``: only the first ``seconds`` of the video are sampled from."""
    return max(1, min(vlen, int(fps * seconds))) if fps > 0 else vlen


# ---------------------------------------------------------------------------------------------- sources

def _describe(src: VideoSource) -> str:
    if isinstance(src, (str, os.PathLike)):
        return repr(os.fspath(src))
    if isinstance(src, (bytes, bytearray)):
        return f"<{len(src)} bytes>"
    name = getattr(src, "name", None) or getattr(src, "filename", None)
    return repr(name) if isinstance(name, str) else f"<{type(src).__name__}>"


def _open_source(src: VideoSource) -> tuple[str | io.BytesIO, str, bool]:
    """-> (path or in-memory buffer, description, is_image)."""
    name = _describe(src)
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
    return io.BytesIO(data), name, _looks_like_image(data[:16])


def _looks_like_image(head: bytes) -> bool:
    return head.startswith((b"\xff\xd8\xff", b"\x89PNG", b"BM")) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def _rewind(handle):
    if isinstance(handle, io.BytesIO):
        handle.seek(0)
    return handle


# ---------------------------------------------------------------------------------------------- readers

class _DecordVideo:
    def __init__(self, handle, name: str):
        import decord

        try:
            self._vr = decord.VideoReader(_rewind(handle), num_threads=1)
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
            with av.open(_rewind(handle)) as container:
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
            with av.open(_rewind(self._handle)) as container:
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
        with av.open(_rewind(handle)) as container:
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


class _Opened:
    """A decoded-on-demand video or image: ``meta`` plus ``frames(indices) -> (T, H, W, 3) uint8``."""

    def __init__(self, src: VideoSource, reader: str | None):
        if reader not in (None, *READERS):
            raise ValueError(f"reader must be one of {READERS} or None, got {reader!r}")
        handle, self.name, is_image = _open_source(src)
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


# ---------------------------------------------------------------------------------------------- transforms

def normalize(frames: torch.Tensor) -> torch.Tensor:
    """(T, 3, H, W) in [0, 255] -> /255 and ImageNet mean/std."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1)
    return (frames / 255.0 - mean) / std


def _resize(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic with antialias, rounded and clamped as torchvision does on uint8 frames."""
    if tuple(frames.shape[-2:]) == size:
        return frames
    out = F.interpolate(frames, size=size, mode="bicubic", align_corners=False, antialias=True)
    return out.round_().clamp_(0, 255)


def random_resized_crop_box(height: int, width: int, scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3),
                            generator: torch.Generator | None = None) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a RandomResizedCrop (torchvision's rule: 10 tries, then a centre crop)."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * torch.empty(1).uniform_(*scale, generator=generator).item()
        aspect = math.exp(torch.empty(1).uniform_(*log_ratio, generator=generator).item())
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def train_transform(frames: torch.Tensor, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(T, 3, H, W) uint8 -> normalized float; one crop box and one flip decision for the whole clip."""
    x = frames.float()
    top, left, h, w = random_resized_crop_box(x.shape[-2], x.shape[-1], generator=generator)
    x = _resize(x[..., top:top + h, left:left + w], (size, size))
    if torch.rand(1, generator=generator).item() < 0.5:
        x = x.flip(-1)
    return normalize(x)


def test_transform(frames: torch.Tensor, size: int) -> torch.Tensor:
    """(T, 3, H, W) uint8 -> bicubic resize to size x size (aspect not kept), normalized float."""
    return normalize(_resize(frames.float(), (size, size)))


# ---------------------------------------------------------------------------------------------- public API

def video_metadata(src: VideoSource, reader: str | None = None) -> VideoMetadata:
    return _Opened(src, reader).meta


def video_duration(src: VideoSource, reader: str | None = None) -> float:
    """Seconds (frames / average fps); 1 s for a still image."""
    return video_metadata(src, reader).duration


def read_frames_at(src: VideoSource, timestamps: Sequence[float] | None = None,
                   index_range: tuple[int, int] | None = None, reader: str | None = None) -> torch.Tensor:
    """Raw frames, (T, H, W, 3) uint8: the frame shown at each timestamp (seconds), or every frame of
    ``index_range = (start, stop)`` (stop excluded, clipped to the video)."""
    if (timestamps is None) == (index_range is None):
        raise ValueError("give exactly one of timestamps or index_range")
    video = _Opened(src, reader)
    n = video.meta.num_frames
    if timestamps is not None:
        if len(timestamps) == 0:
            raise ValueError("timestamps is empty")
        fps = video.meta.fps or 1.0
        indices = [min(n - 1, max(0, int(math.floor(t * fps)))) for t in timestamps]
    else:
        start, stop = max(0, int(index_range[0])), min(n, int(index_range[1]))
        if start >= stop:
            raise ValueError(f"index_range {tuple(index_range)} selects no frame of {video.name} ({n} frames)")
        indices = list(range(start, stop))
    return video.frames(indices)


def load_video(src: VideoSource, num_frames: int = 8, sample: str = "middle", size: int = 224,
               trimmed30: bool = False, train: bool = False, reader: str | None = None,
               generator: torch.Generator | None = None, rng: random.Random | None = None) -> torch.Tensor:
    """Decode, sample ``num_frames`` by the official rule and transform -> (T, 3, size, size) float32."""
    video = _Opened(src, reader)
    vlen = video.meta.num_frames
    if trimmed30:
        vlen = trimmed_length(vlen, video.meta.fps)
    frames = video.frames(get_frame_indices(num_frames, vlen, sample, rng=rng)).permute(0, 3, 1, 2)
    return train_transform(frames, size, generator) if train else test_transform(frames, size)


def segment_windows(duration: float, window: float, stride: float) -> list[tuple[float, float]]:
    """Overlapping ``(start, end)`` windows (seconds) covering ``[0, duration]``; the last one ends at
    ``duration``. A video shorter than one window is one window."""
    if window <= 0 or stride <= 0:
        raise ValueError(f"window and stride must be > 0, got {window} and {stride}")
    if duration <= window:
        return [(0.0, float(duration))]
    starts = [i * stride for i in range(int(math.floor((duration - window) / stride)) + 1)]
    if starts[-1] + window < duration:
        starts.append(duration - window)
    return [(float(s), float(min(s + window, duration))) for s in starts]


def load_segments(src: VideoSource, windows: Sequence[tuple[float, float]], num_frames: int = 8, size: int = 224,
                  reader: str | None = None) -> torch.Tensor:
    """Test-time sampling (interval middles) inside each ``(start, end)`` window in seconds, decoding the
    video once -> (num_windows, T, 3, size, size). Pair with :func:`segment_windows` for long videos."""
    if not windows:
        raise ValueError("windows is empty")
    video = _Opened(src, reader)
    n, fps = video.meta.num_frames, video.meta.fps or 1.0
    per_window = []
    for start, end in windows:
        first = min(n - 1, max(0, int(math.floor(start * fps))))
        stop = min(n, max(first + 1, int(math.ceil(end * fps))))
        per_window.append([first + i for i in get_frame_indices(num_frames, stop - first, "middle")])
    wanted = sorted({i for idx in per_window for i in idx})
    frames = video.frames(wanted).permute(0, 3, 1, 2)
    position = {i: k for k, i in enumerate(wanted)}
    return torch.stack([test_transform(frames[[position[i] for i in idx]], size) for idx in per_window])


def load_segment(src: VideoSource, start: float, end: float, num_frames: int = 8, size: int = 224,
                 reader: str | None = None) -> torch.Tensor:
    """One window of :func:`load_segments` -> (T, 3, size, size)."""
    return load_segments(src, [(start, end)], num_frames, size, reader)[0]


def write_video(dst: str | os.PathLike | BinaryIO, frames: np.ndarray | torch.Tensor, fps: float = 8.0,
                crf: int = 18) -> None:
    """(T, H, W, 3) uint8 RGB -> H.264 yuv420p MP4 (even H and W, as yuv420p needs)."""
    import av
    from fractions import Fraction

    frames = frames.numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    if frames.shape[1] % 2 or frames.shape[2] % 2:
        raise ValueError(f"H and W must be even for yuv420p, got {frames.shape[1]}x{frames.shape[2]}")
    with av.open(dst, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast", "tune": "zerolatency"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


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
