"""A joint video-text model as the source of an index's vectors: unit text vectors, and a video cut into
overlapping time windows with one unit vector each.

Text: L2-normalized text_proj(cls). Video segment: the L2-normalized mean of its per-frame L2-normalized
vision_proj(pooled) vectors. The official ITC score is the frame-average of per-frame cosines, i.e. the dot product
with the *unnormalized* frame mean; normalizing that mean (so the index can use plain inner product over unit
vectors) rescales each segment's scores by one positive factor, so scores differ from the official ones by that
factor but the ranking of texts for one video is unchanged.
"""
from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
import torch.nn.functional as F

from encoders.video_text.model import VideoTextModel
from encoders.video_text.pretrained import load_video_text_model
from encoders.video_text.tokenize import make_tokenize, pre_text
from media import load_segment, segment_windows, video_duration


@dataclass
class VideoEmbedding:
    duration: float
    spans: list[tuple[float, float]]
    vectors: np.ndarray  # (num_segments, dim), unit rows

    def pooled(self) -> np.ndarray:
        return pool_segments(self.vectors)


def pool_segments(vectors: np.ndarray) -> np.ndarray:
    """A whole video's vector: the L2-normalized mean of its segment vectors."""
    mean = np.asarray(vectors, np.float32).mean(0)
    return mean / max(float(np.linalg.norm(mean)), 1e-12)


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
    def embed_texts(self, texts: list[str]) -> np.ndarray:
        ids, mask = self.tokenize([pre_text(t) for t in texts])
        with self._lock:
            return self.model.text_embedding(ids.to(self.device), mask.to(self.device)).float().cpu().numpy()

    @torch.no_grad()
    def embed_clips(self, clips: torch.Tensor) -> np.ndarray:
        """(B, T, 3, H, W) normalized frames -> (B, dim) unit segment vectors."""
        with self._lock:
            frames = self.model.vision_embedding(clips.to(self.device)).float()
        return F.normalize(frames.mean(1), dim=-1).cpu().numpy()

    def load_clip(self, src, start: float, end: float) -> torch.Tensor:
        return load_segment(src, start, end, num_frames=self.num_frames, size=self.frame_size)

    def embed_video(self, src, window: float, stride: float, progress=None, batch: int = 4) -> VideoEmbedding:
        """Cut `src` into overlapping windows and embed each; `progress(done, total)` after every batch."""
        duration = video_duration(src)
        spans = segment_windows(duration, window, stride)
        vectors = []
        for i in range(0, len(spans), batch):
            clips = torch.stack([self.load_clip(src, s, e) for s, e in spans[i:i + batch]])
            vectors.append(self.embed_clips(clips))
            if progress:
                progress(min(i + batch, len(spans)), len(spans))
        return VideoEmbedding(duration, spans, np.concatenate(vectors))

    @torch.no_grad()
    def itm_scores(self, text: str, clips: torch.Tensor) -> np.ndarray:
        """Matching-head "match" logits of one text against (B, T, 3, H, W) clips (the official re-rank score)."""
        ids, mask = self.tokenize([pre_text(text)])
        ids, mask = ids.to(self.device), mask.to(self.device)
        with self._lock:
            vision_tokens, _ = self.model.encode_vision(clips.to(self.device))
            text_tokens, _ = self.model.encode_text(ids, mask)
            n = vision_tokens.shape[0]
            logits = self.model.itm_logits(vision_tokens, text_tokens.expand(n, -1, -1), mask.expand(n, -1))
        return logits[:, 1].float().cpu().numpy()


def load_embedder(model_path: str, **kwargs) -> Embedder:
    """An Embedder over a VideoTextModel saved with `save_pretrained` (or an official checkpoint)."""
    model, tokenizer = load_video_text_model(model_path)
    return Embedder(model, tokenizer, **kwargs)
