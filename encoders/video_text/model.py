"""The joint VideoMamba–BERT model (the official UMT_VIDEOMAMBA): contrastive embeddings of videos and texts, and
a matching head over the fusion layers. Training objectives wrap it from `training.objective`."""
from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn

from encoders.bert import BertForMaskedLMFusion, build_text_encoder
from encoders.checkpoint import CheckpointError, checkpoint_filter_fn, convert_official_video_text
from encoders.clip_teacher import build_teacher
from encoders.registry import create_model
from encoders.video_text.config import VideoTextConfig


class VideoTextModel(nn.Module):
    """vision_encoder (VideoMamba) + text_encoder (BERT with fusion layers) + projections, ITM head and temp."""

    def __init__(self, cfg: VideoTextConfig):
        super().__init__()
        self.cfg = cfg
        self.vision_encoder = create_model(cfg.vision_model, pretrained=cfg.vision_pretrained, **cfg.vision_overrides)
        vision_width = self.vision_encoder.embed_dim
        self.text_encoder = build_text_encoder(cfg.text_encoder, cfg.text_layers, cfg.fusion_layers, vision_width,
                                               mlm=cfg.mlm, pretrained=cfg.text_pretrained,
                                               freeze_text=cfg.freeze_text, dropout=cfg.text_dropout,
                                               trainable_text_layers=cfg.trainable_text_layers)
        text_width = self.text_bert.hidden_size
        self.vision_proj = nn.Linear(vision_width, cfg.embed_dim)
        self.text_proj = nn.Linear(text_width, cfg.embed_dim)
        self.itm_head = nn.Linear(text_width, 2)
        self.temp = nn.Parameter(torch.tensor(float(cfg.temp)))
        self.clip_teacher = None
        if cfg.teacher != "none":
            self.clip_teacher = build_teacher(cfg.teacher, cfg.teacher_path, cfg.teacher_model)
        # bert-base-uncased vocabulary ids (shared by MiniLM); the loaders set them from the tokenizer.
        self.special_token_ids = {"pad": 0, "cls": 101, "sep": 102, "mask": 103}

    @property
    def text_bert(self):
        """The BERT trunk, whichever form (`text_encoder.bert` in pretraining form, else `text_encoder`)."""
        return self.text_encoder.bert if isinstance(self.text_encoder, BertForMaskedLMFusion) else self.text_encoder

    @property
    def num_frames(self) -> int:
        """Frames per clip the vision encoder was built for."""
        return int(self.vision_encoder.cfg.num_frames)

    @property
    def image_size(self) -> int:
        """Frame side (pixels) the vision encoder was built for."""
        return int(self.vision_encoder.cfg.img_size)

    # -- embeddings ---------------------------------------------------------------------------------------------

    def vision_input(self, video: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) as the data pipeline gives it -> (B, 3, T, H, W) as VideoMamba takes it."""
        if video.dim() != 5 or video.shape[2] != 3:
            raise ValueError(f"video must be (B, T, 3, H, W), got {tuple(video.shape)}")
        return video.permute(0, 2, 1, 3, 4)

    def encode_vision(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(tokens (B, T*N, D) without cls, pooled per frame (B, T, D)), unmasked."""
        x = self.vision_input(video)
        tokens, pooled, _ = self.vision_encoder(x, use_image=x.shape[2] == 1, keep_temporal=True)
        return tokens, pooled

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(tokens (B, L, H) of the last text-only layer, [CLS] (B, H))."""
        tokens = self.text_bert(input_ids, attention_mask, mode="text")
        return tokens, tokens[:, 0]

    def vision_embedding(self, video: torch.Tensor) -> torch.Tensor:
        """L2-normalised per-frame embeddings (B, T, E); a clip's score is the mean over frames."""
        return nn.functional.normalize(self.vision_proj(self.encode_vision(video)[1]), dim=-1)

    def text_embedding(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """L2-normalised text embeddings (B, E)."""
        return nn.functional.normalize(self.text_proj(self.encode_text(input_ids, attention_mask)[1]), dim=-1)

    # -- matching -----------------------------------------------------------------------------------------------

    def project_vision_for_itm(self, vision_tokens: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Every fusion layer's cross-attention `(key, value)` of `vision_tokens` (B, N, D), for `itm_logits`'
        `vision_kv`: re-ranking scores one video against many texts, and projecting its ~1.5k tokens once per
        video instead of once per pair removes most of the cost. Index row i and `expand` it over the texts."""
        return self.text_bert.project_vision(vision_tokens)

    def itm_logits(self, vision_tokens: torch.Tensor | None, text_tokens: torch.Tensor, text_mask: torch.Tensor,
                   vision_kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
                   cls_only: bool = False) -> torch.Tensor:
        """Match/no-match logits (B, 2) from the fusion layers' [CLS] (text cross-attends to all vision tokens).

        `vision_kv` (from `project_vision_for_itm`) stands in for `vision_tokens`. cls_only=True computes the last
        fusion layer for [CLS] alone (the head reads nothing else): same logits, less work.
        """
        fused = self.text_bert(attention_mask=text_mask, encoder_hidden_states=vision_tokens, mode="fusion",
                               text_embeds=text_tokens, encoder_kv=vision_kv, cls_only=cls_only)
        return self.itm_head(fused[:, 0])

    def add_mlm_head(self) -> None:
        """Give a model saved without MLM a fresh MLM head (decoder tied to its word embeddings), so training can
        go on with MLM from its weights; a model that has one keeps it."""
        if isinstance(self.text_encoder, BertForMaskedLMFusion):
            return
        bert = self.text_encoder
        self.text_encoder = BertForMaskedLMFusion(bert.config, bert.fusion_layer, bert.encoder_width, bert=bert)
        self.cfg = dataclasses.replace(self.cfg, mlm=True)

    # -- official checkpoints -----------------------------------------------------------------------------------

    def load_official_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Load an official UMT_VIDEOMAMBA state dict (either text form), strictly; the key conversion is
        `encoders.checkpoint.convert_official_video_text`. Any missing, unexpected or mis-shaped key raises."""
        renamed = convert_official_video_text(state_dict, mlm_form=isinstance(self.text_encoder,
                                                                              BertForMaskedLMFusion),
                                              with_teacher=self.clip_teacher is not None)
        prefix = "vision_encoder."
        vision = {k[len(prefix):]: v for k, v in renamed.items() if k.startswith(prefix)}
        renamed = {**{k: v for k, v in renamed.items() if not k.startswith(prefix)},
                   **{prefix + k: v for k, v in checkpoint_filter_fn(vision, self.vision_encoder).items()}}
        own = self.state_dict()
        missing, unexpected = sorted(set(own) - set(renamed)), sorted(set(renamed) - set(own))
        bad = [f"{k}: checkpoint {tuple(renamed[k].shape)} vs model {tuple(own[k].shape)}"
               for k in own if k in renamed and renamed[k].shape != own[k].shape]
        if missing or unexpected or bad:
            raise CheckpointError(f"checkpoint does not fit this VideoTextModel: {len(missing)} missing {missing[:8]}, "
                             f"{len(unexpected)} unexpected {unexpected[:8]}, shape mismatches {bad[:8]}")
        self.load_state_dict(renamed)
