"""The UMT training objective around a joint video-text model: VTC, VTM with hard negatives, MLM, and in stage 1
the masked video aligned to the teacher's features (UTA).

`UMTObjective` is the module the Trainer (and DDP) runs: its forward returns the unweighted losses, the Trainer
weighs them with `training.config.LossWeights`. The wrapped `model` is what gets exported and evaluated.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from encoders.bert import BertForMaskedLMFusion
from encoders.video_text import VideoTextModel
from training.config import ObjectiveConfig
from training.losses import mask_tokens_for_mlm, mlm_loss, similarity, uta_loss, vtc_loss, vtm_loss, vtm_pairs
from training.masking import make_mask


class UMTObjective(nn.Module):
    def __init__(self, model: VideoTextModel, cfg: ObjectiveConfig | None = None):
        super().__init__()
        self.model = model
        self.cfg = cfg or ObjectiveConfig()

    def encode_vision(self, video: torch.Tensor, stage: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(tokens, pooled, UTA loss or None). Stage 1 masks the video (by the teacher's attention for
        "attention") and aligns the student's visible tokens to the teacher; stage 2 is unmasked."""
        model = self.model
        x = model.vision_input(video)
        B, _, T, H, W = x.shape
        use_image = T == 1
        if stage == 2:
            tokens, pooled, _ = model.vision_encoder(x, use_image=use_image, keep_temporal=True)
            return tokens, pooled, None
        if stage != 1:
            raise ValueError(f"stage must be 1 or 2, got {stage!r}")
        target, cls_attn = model.clip_teacher(x) if model.clip_teacher is not None else (None, None)
        ph, pw = model.vision_encoder.patch_embed.proj.kernel_size[-2:]
        ratio = self.cfg.image_mask_ratio if use_image else self.cfg.video_mask_ratio
        mask = make_mask(self.cfg.mask_type, B, T, (H // ph, W // pw), ratio, cls_attn=cls_attn, device=x.device)
        keep_temporal = self.cfg.mask_type == "tube"
        tokens, pooled, student = model.vision_encoder(x, mask=mask, use_image=use_image, keep_temporal=keep_temporal)
        if target is None:
            return tokens, pooled, None
        if target.shape[2] != mask.shape[1]:
            raise ValueError(f"teacher gives {target.shape[2]} tokens per clip, the student has {mask.shape[1]}; "
                             f"match the teacher's image_size/patch_size to the student's grid")
        visible = target[:, ~mask].view(target.shape[0], B, -1, target.shape[-1])
        if student is None or student.shape[-1] != visible.shape[-1]:
            raise ValueError(f"student clip_decoder output {None if student is None else tuple(student.shape)} "
                             f"does not match the teacher's features {tuple(visible.shape)}")
        return tokens, pooled, uta_loss(student, visible, self.cfg.uta_norm_type, self.cfg.uta_loss_type)

    def forward(self, video: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                idx: torch.Tensor | None = None, stage: int = 2, mlm: bool | None = None,
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Unweighted losses `loss_vtc`, `loss_vtm`, `loss_mlm` (when MLM is on), `loss_uta` (stage 1 with a
        teacher). mlm=None uses MLM whenever the model has an MLM head; mlm=False turns it off (fine-tuning)."""
        model = self.model
        with torch.no_grad():
            model.temp.clamp_(0.001, 0.5)
        if idx is None:
            idx = torch.arange(video.shape[0], device=video.device)
        tokens, pooled, uta = self.encode_vision(video, stage)
        text_tokens, text_cls = model.encode_text(input_ids, attention_mask)
        vision_feat, text_feat = model.vision_proj(pooled), model.text_proj(text_cls)
        losses = {"loss_vtc": vtc_loss(vision_feat, text_feat, model.temp, idx)}

        with torch.no_grad():
            sim_v2t, _ = similarity(vision_feat, text_feat, model.temp)
        v_i, t_i, labels = vtm_pairs(sim_v2t, idx, self.cfg.vtm_hard_negatives, generator)
        logits = model.itm_logits(tokens[v_i], text_tokens[t_i], attention_mask[t_i])
        losses["loss_vtm"] = vtm_loss(logits, labels)

        use_mlm = model.cfg.mlm if mlm is None else mlm
        if use_mlm:
            if not isinstance(model.text_encoder, BertForMaskedLMFusion):
                raise ValueError("MLM was requested but the model has no MLM head (built with mlm=False)")
            ids = model.special_token_ids
            masked, mlm_labels = mask_tokens_for_mlm(input_ids, model.text_bert.config.vocab_size, ids["mask"],
                                                     [ids["pad"], ids["cls"], ids["sep"]], self.cfg.mlm_prob,
                                                     generator)
            text_hidden = model.text_bert(masked, attention_mask, mode="text")
            fused = model.text_bert(attention_mask=attention_mask, encoder_hidden_states=tokens, mode="fusion",
                                    text_embeds=text_hidden)
            chosen = mlm_labels != -100  # the vocabulary projection only where a token is predicted
            losses["loss_mlm"] = mlm_loss(model.text_encoder.mlm_logits(fused[chosen]), mlm_labels[chosen])
        if uta is not None:
            losses["loss_uta"] = uta
        return losses
