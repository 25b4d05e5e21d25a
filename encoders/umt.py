"""The joint VideoMamba–BERT model (UMT_VIDEOMAMBA): contrastive embeddings, a matching head over the fusion
layers, the UMT training losses, official-checkpoint loading and a compact save/load format.

Every consumer (training, evaluation, the service) loads models through `load_video_text_model`.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn as nn

from encoders.bert import (BertForMaskedLMFusion, build_text_encoder, load_tokenizer, pretrained_text_state_dict,
                           resolve_text_source)
from encoders.checkpoint import checkpoint_filter_fn
from encoders.clip_teacher import build_teacher
from encoders.losses import (mask_tokens_for_mlm, mlm_loss, similarity, uta_loss, vtc_loss, vtm_loss, vtm_pairs)
from encoders.masking import MASK_TYPES, make_mask
from encoders.registry import create_model

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1
DEMO_MODEL_ENV = "VMR_DEMO_MODEL"
DEMO_MODEL_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pretrained", "videomamba_demo")


def demo_model_path() -> str:
    """The embedded default model of the service, the evaluator and the README: $VMR_DEMO_MODEL if set, else the
    committed demo model (encoders/pretrained/videomamba_demo)."""
    return os.environ.get(DEMO_MODEL_ENV) or DEMO_MODEL_DIR


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
    mask_type: str = "attention"
    video_mask_ratio: float = 0.8
    image_mask_ratio: float = 0.5
    mlm_prob: float = 0.5
    vtm_hard_negatives: bool = True
    uta_norm_type: str = "l2"
    uta_loss_type: str = "l2"
    loss_weights: dict[str, float] = field(default_factory=lambda: {"vtc": 1.0, "vtm": 1.0, "mlm": 1.0, "uta": 1.0})

    def __post_init__(self):
        if self.mask_type not in MASK_TYPES:
            raise ValueError(f"mask_type must be one of {MASK_TYPES}, got {self.mask_type!r}")
        unknown = set(self.loss_weights) - {"vtc", "vtm", "mlm", "uta"}
        if unknown:
            raise ValueError(f"unknown loss weights {sorted(unknown)}; known: vtc, vtm, mlm, uta")

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
        # bert-base-uncased vocabulary ids (shared by MiniLM); `load_video_text_model` sets them from the tokenizer.
        self.special_token_ids = {"pad": 0, "cls": 101, "sep": 102, "mask": 103}

    @property
    def text_bert(self):
        """The BERT trunk, whichever form (`text_encoder.bert` in pretraining form, else `text_encoder`)."""
        return self.text_encoder.bert if isinstance(self.text_encoder, BertForMaskedLMFusion) else self.text_encoder

    # -- embeddings ---------------------------------------------------------------------------------------------

    def _vision_input(self, video: torch.Tensor) -> torch.Tensor:
        if video.dim() != 5 or video.shape[2] != 3:
            raise ValueError(f"video must be (B, T, 3, H, W), got {tuple(video.shape)}")
        return video.permute(0, 2, 1, 3, 4)

    def encode_vision(self, video: torch.Tensor, test: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """(tokens (B, T*N_vis, D) without cls, pooled). test=True: unmasked, pooled per frame (B, T, D).
        test=False applies the training-time mask of stage 1 when a mask is configured."""
        if not test:
            tokens, pooled, _ = self._encode_vision_train(video, stage=1)
            return tokens, pooled
        x = self._vision_input(video)
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

    # -- training -----------------------------------------------------------------------------------------------

    def _encode_vision_train(self, video: torch.Tensor, stage: int):
        """(tokens, pooled, uta loss or None). Stage 1 masks the video (by the teacher's attention for
        "attention") and aligns the student's visible tokens to the teacher; stage 2 is unmasked."""
        x = self._vision_input(video)
        B, _, T, H, W = x.shape
        use_image = T == 1
        if stage == 2:
            tokens, pooled, _ = self.vision_encoder(x, use_image=use_image, keep_temporal=True)
            return tokens, pooled, None
        if stage != 1:
            raise ValueError(f"stage must be 1 or 2, got {stage!r}")
        target, cls_attn = self.clip_teacher(x) if self.clip_teacher is not None else (None, None)
        ph, pw = self.vision_encoder.patch_embed.proj.kernel_size[-2:]
        ratio = self.cfg.image_mask_ratio if use_image else self.cfg.video_mask_ratio
        mask = make_mask(self.cfg.mask_type, B, T, (H // ph, W // pw), ratio, cls_attn=cls_attn, device=x.device)
        keep_temporal = self.cfg.mask_type == "tube"
        tokens, pooled, student = self.vision_encoder(x, mask=mask, use_image=use_image, keep_temporal=keep_temporal)
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
        with torch.no_grad():
            self.temp.clamp_(0.001, 0.5)
        if idx is None:
            idx = torch.arange(video.shape[0], device=video.device)
        tokens, pooled, uta = self._encode_vision_train(video, stage)
        text_tokens, text_cls = self.encode_text(input_ids, attention_mask)
        vision_feat, text_feat = self.vision_proj(pooled), self.text_proj(text_cls)
        losses = {"loss_vtc": vtc_loss(vision_feat, text_feat, self.temp, idx)}

        with torch.no_grad():
            sim_v2t, _ = similarity(vision_feat, text_feat, self.temp)
        v_i, t_i, labels = vtm_pairs(sim_v2t, idx, self.cfg.vtm_hard_negatives, generator)
        logits = self.itm_logits(tokens[v_i], text_tokens[t_i], attention_mask[t_i])
        losses["loss_vtm"] = vtm_loss(logits, labels)

        use_mlm = self.cfg.mlm if mlm is None else mlm
        if use_mlm:
            if not isinstance(self.text_encoder, BertForMaskedLMFusion):
                raise ValueError("MLM was requested but the model has no MLM head (built with mlm=False)")
            ids = self.special_token_ids
            masked, mlm_labels = mask_tokens_for_mlm(input_ids, self.text_bert.config.vocab_size, ids["mask"],
                                                     [ids["pad"], ids["cls"], ids["sep"]], self.cfg.mlm_prob, generator)
            text_hidden = self.text_bert(masked, attention_mask, mode="text")
            fused = self.text_bert(attention_mask=attention_mask, encoder_hidden_states=tokens, mode="fusion",
                                   text_embeds=text_hidden)
            chosen = mlm_labels != -100  # the vocabulary projection only where a token is predicted
            losses["loss_mlm"] = mlm_loss(self.text_encoder.mlm_logits(fused[chosen]), mlm_labels[chosen])
        if uta is not None:
            losses["loss_uta"] = uta
        return losses

    def total_loss(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """Weighted sum with the config's loss weights (the training loop applies its own weights instead)."""
        return sum(self.cfg.loss_weights.get(k.removeprefix("loss_"), 1.0) * v for k, v in losses.items())

    # -- checkpoints --------------------------------------------------------------------------------------------

    def load_official_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Load an official UMT_VIDEOMAMBA state dict (either text form), strictly.

        `text_encoder.bert.` ↔ `text_encoder.` is renamed to this model's form; `text_encoder.cls.*` is dropped
        when this model has no MLM head; `clip_teacher.*` goes into the teacher when one is built, else dropped.
        Any other missing, unexpected or mis-shaped key raises, naming it.
        """
        sd = dict(state_dict)
        for wrapper in ("model", "module", "state_dict"):
            if wrapper in sd and isinstance(sd[wrapper], dict):
                sd = dict(sd[wrapper])
        pretraining_form = isinstance(self.text_encoder, BertForMaskedLMFusion)
        renamed = {}
        for k, v in sd.items():
            if k.startswith("text_encoder."):
                rest = k[len("text_encoder."):].removeprefix("bert.")
                if rest.startswith("cls."):
                    if not pretraining_form:
                        continue
                    k = "text_encoder." + rest
                else:
                    k = ("text_encoder.bert." if pretraining_form else "text_encoder.") + rest
            elif k.startswith("clip_teacher.") and self.clip_teacher is None:
                continue
            renamed[k] = v
        renamed = self._filter_vision(renamed)
        own = self.state_dict()
        missing, unexpected = sorted(set(own) - set(renamed)), sorted(set(renamed) - set(own))
        bad = [f"{k}: checkpoint {tuple(renamed[k].shape)} vs model {tuple(own[k].shape)}"
               for k in own if k in renamed and renamed[k].shape != own[k].shape]
        if missing or unexpected or bad:
            raise ValueError(f"checkpoint does not fit this VideoTextModel: {len(missing)} missing {missing[:8]}, "
                             f"{len(unexpected)} unexpected {unexpected[:8]}, shape mismatches {bad[:8]}")
        self.load_state_dict(renamed)

    def _filter_vision(self, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Let the vision encoder's checkpoint filter adapt `vision_encoder.*` (e.g. temporal pos-embed length)."""
        prefix = "vision_encoder."
        vision = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
        vision = checkpoint_filter_fn(vision, self.vision_encoder)
        return {**{k: v for k, v in sd.items() if not k.startswith(prefix)},
                **{prefix + k: v for k, v in vision.items()}}

    def save_pretrained(self, directory: str, only_changed: bool = False, include_teacher: bool = False,
                        half: bool = False) -> None:
        """Write `config.json` + `model.safetensors` (+ tokenizer files for a custom text directory).

        only_changed=True stores only tensors that differ from the text encoder's packaged pretrained weights
        (the rest are re-filled from the package on load), so a small demo model takes a few MB.
        half=True stores float tensors as float16 (half the file; loading casts them back to the model's dtype).
        Tied tensors (the MLM decoder shares the word embeddings) are stored once.
        """
        from safetensors.torch import save_file

        os.makedirs(directory, exist_ok=True)
        state = {k: v for k, v in self.state_dict().items() if include_teacher or not k.startswith("clip_teacher.")}
        stored, aliases, seen = {}, {}, {}
        for k, v in state.items():
            key = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape))
            if key in seen:
                aliases[k] = seen[key]
            else:
                seen[key] = k
                stored[k] = v
        from_package = []
        if only_changed:
            reference = self._packaged_text_reference()
            from_package = sorted(k for k, v in stored.items() if k in reference and torch.equal(v.detach().cpu(), reference[k]))
            stored = {k: v for k, v in stored.items() if k not in from_package}
        cast = lambda v: v.half() if half and v.is_floating_point() else v  # noqa: E731
        save_file({k: cast(v.detach()).contiguous().cpu() for k, v in stored.items()}, os.path.join(directory, WEIGHTS_NAME))
        cfg = dataclasses.asdict(self.cfg)
        cfg.update(vision_pretrained=None, teacher_path=None if include_teacher else self.cfg.teacher_path)
        meta = {"format_version": FORMAT_VERSION, "config": cfg, "aliases": aliases,
                "filled_from_package": from_package, "includes_teacher": include_teacher and self.clip_teacher is not None}
        with open(os.path.join(directory, CONFIG_NAME), "w") as f:
            json.dump(meta, f, indent=1)

    def _packaged_text_reference(self) -> dict[str, torch.Tensor]:
        """The text encoder's pretrained tensors under this model's key names (empty without a weights dir)."""
        _, weights_dir = resolve_text_source(self.cfg.text_encoder)
        if weights_dir is None or not self.cfg.text_pretrained:
            return {}
        ref = pretrained_text_state_dict(self.text_bert, weights_dir)
        bert_prefix = "text_encoder.bert." if isinstance(self.text_encoder, BertForMaskedLMFusion) else "text_encoder."
        return {("text_encoder." if k.startswith("cls.") else bert_prefix) + k: v for k, v in ref.items()}


def make_tokenize(tokenizer, max_len: int = 32) -> Callable[[list[str]], tuple[torch.Tensor, torch.Tensor]]:
    """texts → (input_ids, attention_mask), padded to `max_len` as the official pipeline does."""

    def tokenize(texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise TypeError("tokenize expects a list of strings")
        out = tokenizer(list(texts), padding="max_length", truncation=True, max_length=max_len, return_tensors="pt")
        return out["input_ids"], out["attention_mask"]

    return tokenize


def _tokenizer_for(cfg: VideoTextConfig, directory: str | None = None):
    if directory and os.path.isfile(os.path.join(directory, "vocab.txt")):
        return load_tokenizer(directory)
    _, weights_dir = resolve_text_source(cfg.text_encoder)
    return load_tokenizer(weights_dir)


def build_video_text_model(cfg: VideoTextConfig) -> tuple[VideoTextModel, Any]:
    """A fresh model (pretrained parts loaded as the config says) and its tokenizer."""
    model = VideoTextModel(cfg)
    tokenizer = _tokenizer_for(cfg)
    _set_special_ids(model, tokenizer)
    return model, tokenizer


def _set_special_ids(model: VideoTextModel, tokenizer) -> None:
    model.special_token_ids = {"pad": tokenizer.pad_token_id, "cls": tokenizer.cls_token_id,
                               "sep": tokenizer.sep_token_id, "mask": tokenizer.mask_token_id}


def load_video_text_model(path: str, map_location: str | torch.device = "cpu", weights_only: bool = True,
                          **overrides) -> tuple[VideoTextModel, Any]:
    """Load (model, tokenizer) from a `save_pretrained` directory or an official `.pth` checkpoint file.

    `overrides` replace config fields (e.g. teacher="none" to drop a stored teacher, or for an official
    file any `official_config` field such as vision_overrides={"num_frames": 16}). The model is returned in
    eval mode. weights_only=False unpickles arbitrary objects in an official `.pth` (only for trusted files).
    """
    if os.path.isdir(path):
        model = _load_saved(path, overrides)
        tokenizer = _tokenizer_for(model.cfg, path)
    elif os.path.isfile(path):
        cfg = official_config(**overrides)
        model = VideoTextModel(cfg)
        model.load_official_state_dict(torch.load(path, map_location="cpu", weights_only=weights_only))
        tokenizer = _tokenizer_for(cfg)
    else:
        raise FileNotFoundError(f"no model directory or checkpoint file at {path!r}")
    _set_special_ids(model, tokenizer)
    return model.to(map_location).eval(), tokenizer


def _load_saved(directory: str, overrides: dict[str, Any]) -> VideoTextModel:
    from safetensors.torch import load_file

    config_file, weights_file = os.path.join(directory, CONFIG_NAME), os.path.join(directory, WEIGHTS_NAME)
    for f in (config_file, weights_file):
        if not os.path.isfile(f):
            raise FileNotFoundError(f"{directory!r} is not a saved VideoTextModel: {os.path.basename(f)} is missing")
    with open(config_file) as f:
        meta = json.load(f)
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{config_file}: format_version {meta.get('format_version')!r}, expected {FORMAT_VERSION}")
    cfg_dict = {**meta["config"], **overrides}
    from_package = set(meta["filled_from_package"])
    cfg_dict["text_pretrained"] = bool(from_package)
    keep_teacher_path = cfg_dict["teacher"] != "none" and not meta["includes_teacher"]
    cfg = VideoTextConfig.from_dict({**cfg_dict, "teacher_path": cfg_dict["teacher_path"] if keep_teacher_path else None})
    model = VideoTextModel(cfg)
    stored = load_file(weights_file)
    if model.clip_teacher is None:
        stored = {k: v for k, v in stored.items() if not k.startswith("clip_teacher.")}
    own = model.state_dict()
    covered = set(stored) | from_package | {a for a, src in meta["aliases"].items() if src in stored or src in from_package}
    if model.clip_teacher is not None and not meta["includes_teacher"]:
        covered |= {k for k in own if k.startswith("clip_teacher.")}
    missing, unexpected = sorted(set(own) - covered), sorted(set(stored) - set(own))
    if missing or unexpected:
        raise ValueError(f"{weights_file} does not fit its config: missing {missing[:8]}, unexpected {unexpected[:8]}")
    model.load_state_dict(stored, strict=False)
    return model
