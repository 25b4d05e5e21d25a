"""A joint video-text model as the source of an index's vectors: unit text vectors, and a video cut into
overlapping time windows with one unit vector each.

Text: L2-normalized text_proj(cls). Video segment: the L2-normalized mean of its per-frame L2-normalized
vision_proj(pooled) vectors. The official ITC score is the frame-average of per-frame cosines, i.e. the dot product
with the *unnormalized* frame mean; normalizing that mean (so the index can use plain inner product over unit
vectors) rescales each segment's scores by one positive factor, so scores differ from the official ones by that
factor but the ranking of texts for one video is unchanged.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
import torch.nn.functional as F

from encoders.ops.selective_scan import ENV_VAR, resolve_backend
from encoders.video_text.model import VideoTextModel
from encoders.video_text.pretrained import load_video_text_model
from encoders.video_text.tokenize import make_tokenize, pre_text
from media import OpenedVideo, VideoDecodeError, load_segment, segment_windows, stream_segments, video_duration

BATCH = 4  # windows per encoder forward
QUEUE_CLIPS = 8  # decoded clips the decoder thread may hold ahead of the encoder


@dataclass
class VideoEmbedding:
    duration: float
    spans: list[tuple[float, float]]
    vectors: np.ndarray  # (num_segments, dim), unit rows
    tokens: np.ndarray | None = None  # (num_segments, N, D) float16 vision tokens, what the matching head reads

    def pooled(self) -> np.ndarray:
        return pool_segments(self.vectors)


def pool_segments(vectors: np.ndarray) -> np.ndarray:
    """A whole video's vector: the L2-normalized mean of its segment vectors."""
    mean = np.asarray(vectors, np.float32).mean(0)
    return mean / max(float(np.linalg.norm(mean)), 1e-12)


@functools.lru_cache(maxsize=None)
def _scan_backend(on_cuda: bool, requested: str | None) -> str:
    """The backend the selective-scan dispatcher picks for float32 tensors, decided once per process and setting
    (on CPU this builds or loads the compiled kernel the first time). `requested` is only the cache key: the
    dispatcher reads VIDEOMAMBA_SCAN_BACKEND itself."""
    try:
        return resolve_backend(None, on_cuda)
    except (ValueError, RuntimeError) as err:  # e.g. a forced backend that cannot run here
        return f"error: {err}"


def scan_backend(device: str) -> str:
    """The selective-scan backend a video encoder on `device` runs: cpp, torch, ref or cuda ("error: ..." when a
    forced backend cannot run here)."""
    return _scan_backend(str(device).startswith("cuda"), os.environ.get(ENV_VAR))


class Embedder:
    """Thread-safe: one forward pass at a time (the CPU has few cores; parallel forwards only thrash).

    Frames per clip and frame size default to what the model was built for (its config).
    """

    def __init__(self, model: VideoTextModel, tokenizer, num_frames: int = 0, frame_size: int = 0,
                 max_text_tokens: int = 0, device: str = "cpu"):
        self.model = model.eval().to(device)
        self.num_frames = num_frames or model.num_frames
        self.frame_size = frame_size or model.image_size
        self.max_text_tokens = max_text_tokens or model.cfg.max_txt_len
        self.tokenize = make_tokenize(tokenizer, self.max_text_tokens)
        self._tokenize_longest = make_tokenize(tokenizer, self.max_text_tokens, dynamic=True)
        self.device = device
        self._lock = threading.Lock()
        self.dim = int(model.cfg.embed_dim)

    @cached_property
    def fingerprint(self) -> str:
        """What decides the vectors this embedder makes, hashed: every weight (the distillation teacher aside), the
        architecture, and how clips and texts are cut. Two embedders with one fingerprint make the same vectors;
        vectors of two fingerprints are not comparable."""
        digest = hashlib.sha256()
        cfg = self.model.cfg
        shape = {name: getattr(cfg, name) for name in ("vision_model", "vision_overrides", "text_encoder",
                                                        "text_layers", "fusion_layers", "embed_dim")}
        shape.update(num_frames=self.num_frames, frame_size=self.frame_size, max_text_tokens=self.max_text_tokens)
        digest.update(json.dumps(shape, sort_keys=True, default=str).encode())
        for name, tensor in sorted(self.model.state_dict().items()):
            if name.startswith("clip_teacher."):
                continue
            flat = tensor.detach().cpu().contiguous().reshape(-1)
            digest.update(f"{name}:{flat.dtype}:{tuple(tensor.shape)}".encode())
            digest.update(flat.view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()[:24]

    @torch.no_grad()
    def embed_texts(self, texts: list[str], dynamic_padding: bool = False) -> np.ndarray:
        """(len(texts), dim) unit vectors. `dynamic_padding` pads to the longest text of the call instead of to
        `max_text_tokens`: the same vectors within 1e-5 (padding is masked), less work for short queries."""
        tokenize = self._tokenize_longest if dynamic_padding else self.tokenize
        ids, mask = tokenize([pre_text(t) for t in texts])
        with self._lock:
            return self.model.text_embedding(ids.to(self.device), mask.to(self.device)).float().cpu().numpy()

    @torch.no_grad()
    def embed_clips(self, clips: torch.Tensor, with_tokens: bool = False):
        """(B, T, 3, H, W) normalized frames -> (B, dim) unit segment vectors (and, with_tokens, their (B, N, D)
        float16 vision tokens, so the matching head can score them later without decoding the video again)."""
        with self._lock:
            tokens, pooled = self.model.encode_vision(clips.to(self.device))
            frames = F.normalize(self.model.vision_proj(pooled), dim=-1).float()
        vectors = F.normalize(frames.mean(1), dim=-1).cpu().numpy()
        return (vectors, tokens.half().cpu().numpy()) if with_tokens else vectors

    def load_clip(self, src, start: float, end: float) -> torch.Tensor:
        return load_segment(src, start, end, num_frames=self.num_frames, size=self.frame_size)

    def embed_video(self, src, window: float, stride: float, progress=None, batch: int = BATCH,
                    with_tokens: bool = False, frame_taps=None) -> VideoEmbedding:
        """Cut `src` into overlapping windows and embed each (see `embed_videos`); `progress(done, total)` after every
        batch; a `VideoDecodeError` is raised."""
        [(_, result)] = self.embed_videos([src], window, stride, batch, with_tokens, frame_taps,
                                          progress and (lambda _, done, total: progress(done, total)))
        if isinstance(result, Exception):
            raise result
        return result

    def embed_videos(self, sources, window: float, stride: float, batch: int = BATCH, with_tokens: bool = False,
                     frame_taps=None, progress=None) -> Iterator[tuple[object, VideoEmbedding | Exception]]:
        """(source, its embedding, or the `VideoDecodeError` / `OSError` that stopped it) for each source, in order.

        Each file is decoded once, front to back (`media.stream_segments`; by PyAV, which leaves out the frames
        that no window samples and no other frame references), by a thread of its own that stays at
        most `QUEUE_CLIPS` clips ahead of the encoder, so decoding overlaps encoding and memory does not grow with a
        video's length; windows of consecutive videos share a batch. A video that fails part-way contributes
        nothing. `frame_taps(video, spans)` may return {frame index: f(raw frame)} to see frames of the same pass
        (thumbnails); `progress(i, done, total)` after every batch that holds windows of source i. Equal, window
        for window, to `embed_video_per_window`."""
        sources = list(sources)
        feed = _Feed(QUEUE_CLIPS)
        thread = threading.Thread(target=self._decode, args=(sources, window, stride, frame_taps, feed),
                                  name="embedder-decode", daemon=True)
        thread.start()
        try:
            yield from self._encode(sources, feed, batch, with_tokens, progress)
        finally:
            feed.close()
            thread.join()

    def _decode(self, sources, window, stride, frame_taps, feed: "_Feed") -> None:
        """The decoder thread: ("start", i, (duration, spans)), ("clip", i, clip)..., ("end", i, None) per source,
        ("error", i, err) instead when it cannot be decoded, then None; an unexpected error is passed on as
        ("fatal", None, err)."""
        try:
            for i, src in enumerate(sources):
                try:
                    video = OpenedVideo(src, "av")  # PyAV's decoder skips frames nobody samples; decord's cannot
                    spans = segment_windows(video.meta.duration, window, stride)
                    feed.put(("start", i, (video.meta.duration, spans)))
                    taps = frame_taps(video, spans) if frame_taps else None
                    for clip in stream_segments(video, spans, self.num_frames, self.frame_size, taps):
                        feed.put(("clip", i, clip))
                    feed.put(("end", i, None))
                except (VideoDecodeError, OSError) as err:
                    feed.put(("error", i, err))
            feed.put(None)
        except _Closed:
            pass
        except BaseException as err:  # noqa: BLE001 -- handed to the consumer, which raises it
            try:
                feed.put(("fatal", None, err))
            except _Closed:
                pass

    def _encode(self, sources, feed: "_Feed", batch: int, with_tokens: bool, progress):
        videos: dict[int, dict] = {}  # source index -> duration, spans, outputs so far, ended
        clips: list[tuple[int, torch.Tensor]] = []
        next_out = 0

        def run_batch() -> None:
            out = self.embed_clips(torch.stack([c for _, c in clips]), with_tokens)
            vectors, tokens = out if with_tokens else (out, None)
            for row, (i, _) in enumerate(clips):
                videos[i]["vectors"].append(vectors[row])
                if with_tokens:
                    videos[i]["tokens"].append(tokens[row])
            for i in dict.fromkeys(i for i, _ in clips):
                if progress:
                    progress(i, len(videos[i]["vectors"]), len(videos[i]["spans"]))
            clips.clear()

        def finished():
            nonlocal next_out
            while next_out in videos and (videos[next_out].get("error") or (
                    videos[next_out]["ended"] and len(videos[next_out]["vectors"]) == len(videos[next_out]["spans"]))):
                v = videos.pop(next_out)
                result = v.get("error") or VideoEmbedding(
                    v["duration"], v["spans"], np.stack(v["vectors"]),
                    np.stack(v["tokens"]) if with_tokens else None)
                yield sources[next_out], result
                next_out += 1

        while (item := feed.get()) is not None:
            kind, i, value = item
            if kind == "fatal":
                raise value
            if kind == "start":
                videos[i] = {"duration": value[0], "spans": value[1], "vectors": [], "tokens": [], "ended": False}
            elif kind == "clip":
                clips.append((i, value))
                if len(clips) >= batch:
                    run_batch()
            elif kind == "end":
                videos[i]["ended"] = True
            else:  # a failed video: its windows are dropped, embedded or not
                clips[:] = [(j, c) for j, c in clips if j != i]
                videos[i] = {"error": value}
            yield from finished()
        if clips:
            run_batch()
        yield from finished()

    def embed_video_per_window(self, src, window: float, stride: float, batch: int = BATCH) -> VideoEmbedding:
        """The plain reference of `embed_video`: every window decoded on its own (`load_clip`: the file opened and
        sought again per window), then embedded. Tests hold `embed_video` equal to it; benchmarks time both."""
        duration = video_duration(src)
        spans = segment_windows(duration, window, stride)
        vectors = [self.embed_clips(torch.stack([self.load_clip(src, s, e) for s, e in spans[i:i + batch]]))
                   for i in range(0, len(spans), batch)]
        return VideoEmbedding(duration, spans, np.concatenate(vectors))

    @property
    def scan_backend(self) -> str:
        return scan_backend(self.device)

    def token_bytes(self) -> int:
        """Bytes of one window's float16 vision tokens (what storing them for re-ranking costs)."""
        vision = self.model.vision_encoder
        patches = (self.frame_size // vision.patch_embed.patch_size) ** 2
        frames = self.num_frames // vision.patch_embed.kernel_size
        return 2 * frames * patches * vision.embed_dim

    @torch.no_grad()
    def itm_scores(self, text: str, vision_tokens: np.ndarray | torch.Tensor) -> np.ndarray:
        """Matching-head "match" logits (the official re-rank score) of one text against (B, N, D) vision tokens
        (stored at ingestion, or from `encode_vision` of freshly decoded clips)."""
        ids, mask = self.tokenize([pre_text(text)])
        ids, mask = ids.to(self.device), mask.to(self.device)
        vision = torch.as_tensor(vision_tokens).to(self.device, torch.float32)
        with self._lock:
            text_tokens, _ = self.model.encode_text(ids, mask)
            n = vision.shape[0]
            logits = self.model.itm_logits(vision, text_tokens.expand(n, -1, -1), mask.expand(n, -1))
        return logits[:, 1].float().cpu().numpy()

    @torch.no_grad()
    def clip_tokens(self, clips: torch.Tensor) -> np.ndarray:
        """(B, N, D) float16 vision tokens of freshly decoded (B, T, 3, H, W) clips."""
        with self._lock:
            tokens, _ = self.model.encode_vision(clips.to(self.device))
        return tokens.half().cpu().numpy()


class _Closed(Exception):
    """The consumer of a `_Feed` has gone: the producer stops."""


class _Feed:
    """A bounded queue from the decoder thread to the encoder that the encoder can close, so a producer blocked on
    a full queue stops when nobody will read it (an error, or a caller that stops iterating)."""

    def __init__(self, size: int):
        self._queue: queue.Queue = queue.Queue(maxsize=size)
        self._closed = threading.Event()

    def put(self, item) -> None:
        while not self._closed.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _Closed

    def get(self):
        return self._queue.get()

    def close(self) -> None:
        self._closed.set()


def set_encoder_threads(threads: int) -> int:
    """torch's intra-op threads for every later forward in this process, whatever thread runs it (0: one per core);
    returns the count."""
    if threads < 0:
        raise ValueError(f"encoder threads must be >= 0, got {threads}")
    torch.set_num_threads(threads or os.cpu_count() or 1)
    return torch.get_num_threads()


def load_embedder(model_path: str, **kwargs) -> Embedder:
    """An Embedder over a VideoTextModel saved with `save_pretrained` (or an official checkpoint)."""
    model, tokenizer = load_video_text_model(model_path)
    return Embedder(model, tokenizer, **kwargs)
