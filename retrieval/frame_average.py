"""The frame-averaged baseline of a video–text model: every frame is encoded on its own, as an image, so the
model sees no temporal context and a clip is the average of its frames (the ITM head cross-attends to the
frames' tokens, an unordered set). When every frame is sampled, a clip and its time-reversal get identical
embeddings and matching scores, so the baseline's temporal accuracy on reversed pairs is chance by construction
(with a subset, e.g. 8 interval middles of 16 frames, the reversal's frames are the neighbouring ones: near
chance); the same weights with full temporal modelling show what the video encoder adds."""
from __future__ import annotations

import torch


class FrameAveraged:
    """Wraps a `VideoTextModel` for the evaluator: `encode_vision` encodes frames independently and returns the
    same shapes as the wrapped model's (tokens (B, T*P, D), per-frame pooled (B, T, D)); everything else is the
    wrapped model's."""

    def __init__(self, model):
        self.model = model

    def __getattr__(self, name: str):
        return getattr(self.model, name)

    def encode_vision(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if video.dim() != 5:
            raise ValueError(f"video must be (B, T, 3, H, W), got {tuple(video.shape)}")
        batch, frames = video.shape[:2]
        tokens, pooled = self.model.encode_vision(video.reshape(batch * frames, 1, *video.shape[2:]))
        return tokens.reshape(batch, -1, tokens.shape[-1]), pooled.reshape(batch, frames, pooled.shape[-1])
