"""Teachers for unmasked token alignment (UTA): the CLIP ViT visual tower (OpenAI key layout, as the official
`clip_teacher.*` keys) and a trained VideoMamba (self-distillation). Both return
`(features (K=1, B, 1+T*N, C), cls_attention (B*T, N))` for frames `(B, 3, T, H, W)`."""
from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class ClipTeacherConfig:
    width: int = 768
    layers: int = 12
    heads: int = 12
    patch_size: int = 16
    image_size: int = 224
    output_dim: int = 512


CLIP_CONFIGS = {
    "clip_b16": ClipTeacherConfig(),
    "clip_test_tiny": ClipTeacherConfig(width=64, layers=2, heads=4, patch_size=16, image_size=64, output_dim=32),
}


class QuickGELU(nn.Module):
    """OpenAI CLIP's activation x·σ(1.702x)."""

    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict(
            c_fc=nn.Linear(width, 4 * width), gelu=QuickGELU(), c_proj=nn.Linear(4 * width, width)))
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor, return_attn: bool = False):
        y = self.ln_1(x)
        y, attn = self.attn(y, y, y, need_weights=return_attn, average_attn_weights=True)
        x = x + y
        x = x + self.mlp(self.ln_2(x))
        return x, attn


class ClipTransformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int):
        super().__init__()
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads) for _ in range(layers))


class FrozenTeacher(nn.Module):
    """A teacher is never trained: `freeze()` after building, and `train()` keeps it in eval mode, so a
    student's `model.train()` cannot switch on its dropout or touch its statistics."""

    def freeze(self) -> None:
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):
        return super().train(False)


class ClipTeacher(FrozenTeacher):
    """CLIP visual tower run frame by frame; features = last block output (no ln_post) @ proj, cls averaged
    over frames. Input frames are resized (bicubic) to `image_size` when needed. Frozen and in eval mode."""

    def __init__(self, cfg: ClipTeacherConfig = ClipTeacherConfig()):
        super().__init__()
        self.cfg = cfg
        w, grid = cfg.width, cfg.image_size // cfg.patch_size
        scale = w ** -0.5
        self.conv1 = nn.Conv3d(3, w, kernel_size=(1, cfg.patch_size, cfg.patch_size),
                               stride=(1, cfg.patch_size, cfg.patch_size), bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(w))
        self.positional_embedding = nn.Parameter(scale * torch.randn(grid * grid + 1, w))
        self.ln_pre = nn.LayerNorm(w)
        self.transformer = ClipTransformer(w, cfg.layers, cfg.heads)
        self.ln_post = nn.LayerNorm(w)
        self.proj = nn.Parameter(scale * torch.randn(w, cfg.output_dim))
        self.freeze()

    @property
    def output_dim(self) -> int:
        return self.cfg.output_dim

    @torch.no_grad()
    def forward(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if video.dim() != 5 or video.shape[1] != 3:
            raise ValueError(f"teacher input must be (B, 3, T, H, W), got {tuple(video.shape)}")
        B, _, T, H, W = video.shape
        size = self.cfg.image_size
        frames = video.transpose(1, 2).reshape(B * T, 3, H, W)
        if (H, W) != (size, size):
            frames = F.interpolate(frames, size=(size, size), mode="bicubic", align_corners=False)
        x = self.conv1(frames.unsqueeze(2).to(self.conv1.weight.dtype)).flatten(2).transpose(1, 2)  # (BT, N, w)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = self.ln_pre(torch.cat([cls, x], 1) + self.positional_embedding.to(x.dtype))
        blocks = self.transformer.resblocks
        for i, block in enumerate(blocks):
            x, attn = block(x, return_attn=i == len(blocks) - 1)
        feats = (x @ self.proj).view(B, T, x.shape[1], -1)
        cls_feat = feats[:, :, :1].mean(1)
        patches = feats[:, :, 1:].reshape(B, -1, feats.shape[-1])
        return torch.cat([cls_feat, patches], 1).unsqueeze(0), attn[:, 0, 1:]


def _hf_clip_to_openai(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Hugging Face CLIPVisionModel/CLIPModel names → OpenAI visual names (q/k/v fused into in_proj)."""
    pre = "vision_model."
    out = {
        "class_embedding": sd[pre + "embeddings.class_embedding"],
        "conv1.weight": sd[pre + "embeddings.patch_embedding.weight"],
        "positional_embedding": sd[pre + "embeddings.position_embedding.weight"],
        "ln_pre.weight": sd[pre + "pre_layrnorm.weight"], "ln_pre.bias": sd[pre + "pre_layrnorm.bias"],
        "ln_post.weight": sd[pre + "post_layernorm.weight"], "ln_post.bias": sd[pre + "post_layernorm.bias"],
    }
    if "visual_projection.weight" in sd:
        out["proj"] = sd["visual_projection.weight"].T.contiguous()
    n_layers = 1 + max(int(k.split(".")[3]) for k in sd if k.startswith(pre + "encoder.layers."))
    for i in range(n_layers):
        src, dst = f"{pre}encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[dst + f"attn.in_proj_{kind}"] = torch.cat([sd[src + f"self_attn.{p}_proj.{kind}"] for p in "qkv"])
            out[dst + f"attn.out_proj.{kind}"] = sd[src + f"self_attn.out_proj.{kind}"]
            out[dst + f"ln_1.{kind}"] = sd[src + f"layer_norm1.{kind}"]
            out[dst + f"ln_2.{kind}"] = sd[src + f"layer_norm2.{kind}"]
            out[dst + f"mlp.c_fc.{kind}"] = sd[src + f"mlp.fc1.{kind}"]
            out[dst + f"mlp.c_proj.{kind}"] = sd[src + f"mlp.fc2.{kind}"]
    return out


def _read_weights(path: str) -> dict[str, torch.Tensor]:
    if os.path.isdir(path):
        for name in ("model.safetensors", "pytorch_model.bin"):
            if os.path.isfile(os.path.join(path, name)):
                return _read_weights(os.path.join(path, name))
        raise FileNotFoundError(f"no model.safetensors or pytorch_model.bin in {path!r}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"CLIP teacher weights {path!r} do not exist")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if hasattr(obj, "state_dict"):
        obj = obj.state_dict()
    return obj.get("state_dict", obj) if isinstance(obj, dict) else obj


def clip_visual_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Normalise any supported CLIP state dict to the teacher's keys: the official `vit_b16.pth` extraction,
    full OpenAI/open_clip dicts (`visual.*`, text tower dropped), or Hugging Face CLIP names."""
    if any(k.startswith("vision_model.") for k in sd):
        sd = _hf_clip_to_openai(sd)
    elif any(k.startswith("visual.") for k in sd):
        sd = {k[len("visual."):]: v for k, v in sd.items() if k.startswith("visual.")}
    sd = {k.removeprefix("clip_teacher."): v for k, v in sd.items()}
    if "conv1.weight" in sd and sd["conv1.weight"].dim() == 4:
        sd["conv1.weight"] = sd["conv1.weight"].unsqueeze(2)
    return sd


def load_clip_teacher_weights(teacher: ClipTeacher, path: str) -> None:
    """Load CLIP visual weights strictly; a missing/unexpected/mis-shaped key raises with its name."""
    sd = clip_visual_state_dict(_read_weights(path))
    own = teacher.state_dict()
    missing, unexpected = sorted(set(own) - set(sd)), sorted(set(sd) - set(own))
    bad = [f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in own if k in sd and sd[k].shape != own[k].shape]
    if missing or unexpected or bad:
        raise ValueError(f"CLIP teacher weights {path!r} do not fit: missing {missing[:5]}, unexpected "
                         f"{unexpected[:5]}, shape mismatch {bad[:5]}")
    teacher.load_state_dict(sd)


class VideoMambaTeacher(FrozenTeacher):
    """Self-distillation teacher: a trained (smaller) VideoMamba. Features are its final tokens with the pooled
    feature in the cls slot; it has no attention, so the cls→patch saliency is softmax(pooled·patch/√D) per frame.
    The student's `clip_decoder` output width must equal the teacher's `embed_dim`."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.freeze()

    @property
    def output_dim(self) -> int:
        return self.model.embed_dim

    @torch.no_grad()
    def forward(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, _, T = video.shape[:3]
        tokens, pooled, _ = self.model(video, use_image=T == 1)
        feats = torch.cat([pooled[:, :1], tokens], 1)
        per_frame = tokens.view(B, T, -1, tokens.shape[-1])
        saliency = torch.einsum("bd,btnd->btn", pooled[:, 0], per_frame) / tokens.shape[-1] ** 0.5
        return feats.unsqueeze(0), saliency.softmax(-1).reshape(B * T, -1)


def build_teacher(kind: str, path: str | None = None, model_name: str | None = None, **overrides) -> nn.Module:
    """"clip_b16" / "clip_test_tiny" (weights from `path`, random when None) or "videomamba" (registered
    `model_name` with the checkpoint at `path`)."""
    if kind in CLIP_CONFIGS:
        teacher = ClipTeacher(CLIP_CONFIGS[kind])
        if path:
            load_clip_teacher_weights(teacher, path)
        return teacher
    if kind == "videomamba":
        if not model_name or not path:
            raise ValueError("a videomamba teacher needs model_name (registered VideoMamba) and path (its checkpoint)")
        from encoders.registry import create_model

        return VideoMambaTeacher(create_model(model_name, pretrained=path, **overrides))
    raise ValueError(f"unknown teacher {kind!r}; choose from {sorted(CLIP_CONFIGS) + ['videomamba', 'none']}")
