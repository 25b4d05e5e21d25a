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
import threading
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
import torch.nn.functional as F

from encoders.ops.selective_scan import ENV_VAR, resolve_backend
from encoders.video_text.model import VideoTextModel
from encoders.video_text.pretrained import load_video_text_model
from encoders.video_text.tokenize import make_tokenize, pre_text
from media import load_segment, segment_windows, video_duration


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

    def embed_video(self, src, window: float, stride: float, progress=None, batch: int = 4,
                    with_tokens: bool = False) -> VideoEmbedding:
        """Cut `src` into overlapping windows and embed each; `progress(done, total)` after every batch."""
        duration = video_duration(src)
        spans = segment_windows(duration, window, stride)
        vectors, tokens = [], []
        for i in range(0, len(spans), batch):
            clips = torch.stack([self.load_clip(src, s, e) for s, e in spans[i:i + batch]])
            out = self.embed_clips(clips, with_tokens)
            vectors.append(out[0] if with_tokens else out)
            if with_tokens:
                tokens.append(out[1])
            if progress:
                progress(min(i + batch, len(spans)), len(spans))
        return VideoEmbedding(duration, spans, np.concatenate(vectors),
                              np.concatenate(tokens) if with_tokens else None)

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
