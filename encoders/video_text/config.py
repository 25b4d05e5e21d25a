"""What a joint video-text model is: its encoders, their sizes and which pretrained parts they start from.

How it is trained (losses, their weights, masking) is not here: that is `training.config.ObjectiveConfig`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class VideoTextConfig:
    vision_model: str = "videomamba_test_tiny"  # registered VideoMamba name
    vision_overrides: dict[str, Any] = field(default_factory=dict)
    vision_pretrained: str | None = None  # vision-only checkpoint (e.g. the K400 mask-pretrain)
    text_encoder: str = "minilm"  # "minilm" (packaged), "bert-base" (random init) or a local BERT directory
    text_pretrained: bool = True  # load the text encoder's weights from its directory
    text_layers: int | None = None  # text-only layers; None keeps every layer of the source config
    fusion_layers: int = 2  # cross-attending layers on top (official BERT-base: 9 text + 3 fusion)
    freeze_text: bool = False
    trainable_text_layers: int = 0  # with freeze_text: the top text-only layers that still train
    text_dropout: float | None = None  # None keeps the text config's dropout (0.1 for BERT/MiniLM)
    mlm: bool = True  # build the MLM head (pretraining form, `text_encoder.bert.*` + `text_encoder.cls.*`)
    embed_dim: int = 512
    temp: float = 0.07
    max_txt_len: int = 32
    teacher: str = "none"  # "none", "clip_b16", "clip_test_tiny", "videomamba"
    teacher_path: str | None = None
    teacher_model: str | None = None  # registered VideoMamba name for a "videomamba" (self-distillation) teacher

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "VideoTextConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown VideoTextConfig fields {sorted(unknown)}")
        return cls(**d)


def official_config(**overrides) -> VideoTextConfig:
    """The released UMT_VIDEOMAMBA layout: VideoMamba-M, BERT-base with 9 text + 3 fusion layers."""
    base = dict(vision_model="videomamba_middle", text_encoder="bert-base", text_pretrained=False, text_layers=9,
                fusion_layers=3, mlm=False)
    return VideoTextConfig(**{**base, **overrides})
