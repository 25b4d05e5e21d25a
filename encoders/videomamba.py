"""VideoMamba visual encoder (Li et al., ECCV 2024), the `PretrainVideoMamba` of the official video_mm code.

Tokens: a 3-D patch embedding, one cls token at the head, a spatial pos_embed shared by all frames and a
temporal embedding on patch tokens only. Blocks are Mamba-LM "add -> RMSNorm -> bidirectional mixer" with an
fp32 residual stream. Outputs follow the official `forward`: final-normed patch tokens, the pooled
`pool_norm(cls + mean)` feature, and the UTA decoder outputs when a mask is given. Parameter names equal the
official state dict (420 keys for Ti/S, 556 for M).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.utils.checkpoint

from encoders.mamba_mixer import BiMambaMixer
from encoders.ops.rms_norm import RMSNorm, rms_norm_fn
from encoders.registry import register_model
from encoders.scan_order import SCAN_ORDERS, gather_along, make_plan, scatter_along


@dataclass
class VideoMambaConfig:
    """Constructor arguments of the official PretrainVideoMamba (same names and defaults), plus `scan_order`
    and `scan_chunk_size` (inference-only chunked mixing, see `BiMambaMixer`)."""

    img_size: int = 224
    patch_size: int = 16
    depth: int = 24
    embed_dim: int = 192
    channels: int = 3
    drop_path_rate: float = 0.0
    ssm_cfg: dict | None = None
    norm_epsilon: float = 1e-5
    fused_add_norm: bool = True
    rms_norm: bool = True
    residual_in_fp32: bool = True
    bimamba: bool = True
    pool_type: str = "cls+avg"
    kernel_size: int = 1
    num_frames: int = 8
    use_checkpoint: bool = False
    checkpoint_num: int = 0
    clip_output_dim: int = 512
    clip_return_layer: int = 1
    clip_student_return_interval: int = 1
    add_pool_norm: bool = True
    scan_order: str = "spatial_first"
    scan_chunk_size: int | None = None

    def __post_init__(self):
        if self.img_size % self.patch_size:
            raise ValueError(f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}")
        if self.num_frames % self.kernel_size:
            raise ValueError(f"num_frames {self.num_frames} is not a multiple of the tubelet kernel_size "
                             f"{self.kernel_size}")
        if self.scan_order not in SCAN_ORDERS:
            raise ValueError(f"unknown scan_order {self.scan_order!r}; choose from {', '.join(SCAN_ORDERS)}")
        if not (self.rms_norm and self.fused_add_norm and self.residual_in_fp32):
            raise ValueError("only the released configuration is implemented: rms_norm, fused_add_norm and "
                             "residual_in_fp32 must be True")
        if self.pool_type != "cls+avg":
            raise ValueError(f"pool_type {self.pool_type!r} is not implemented; the official models use 'cls+avg'")

    @property
    def grid(self) -> int:
        return self.img_size // self.patch_size


class DropPath(nn.Module):
    """Stochastic depth per sample: drop the whole branch with probability `p`, rescale survivors."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x):
        if self.p == 0.0 or not self.training:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class PatchEmbed3D(nn.Module):
    """Non-overlapping tubelets (kernel_size frames x patch x patch) -> (B, D, T', H', W')."""

    def __init__(self, img_size=224, patch_size=16, kernel_size=1, in_chans=3, embed_dim=192):
        super().__init__()
        self.img_size, self.patch_size, self.kernel_size = img_size, patch_size, kernel_size
        self.num_patches = (img_size // patch_size) ** 2
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=(kernel_size, patch_size, patch_size),
                              stride=(kernel_size, patch_size, patch_size))

    def forward(self, x):
        if x.dim() != 5 or x.shape[1] != self.proj.in_channels:
            raise ValueError(f"VideoMamba expects video (B, {self.proj.in_channels}, T, H, W), "
                             f"got {tuple(x.shape)}")
        if x.shape[-2:] != (self.img_size, self.img_size):
            raise ValueError(f"frames are {x.shape[-2]}x{x.shape[-1]} but the model is built for "
                             f"{self.img_size}x{self.img_size} (img_size)")
        if x.shape[2] % self.kernel_size:
            raise ValueError(f"{x.shape[2]} frames is not a multiple of the tubelet kernel_size {self.kernel_size}")
        return self.proj(x)


class Block(nn.Module):
    """Add -> RMSNorm -> mixer, returning (mixer output, fp32 residual stream) like mamba-ssm's Block.

    `drop_path` applies to the incoming hidden state (the previous block's mixer output), as officially.
    """

    def __init__(self, dim: int, layer_idx: int, ssm_cfg: dict | None = None, norm_epsilon: float = 1e-5,
                 drop_path: float = 0.0, bimamba: bool = True, chunk_size: int | None = None):
        super().__init__()
        self.mixer = BiMambaMixer(dim, layer_idx=layer_idx, bimamba=bimamba, chunk_size=chunk_size,
                                  **(ssm_cfg or {}))
        self.norm = RMSNorm(dim, eps=norm_epsilon)
        self.drop_path = DropPath(drop_path)

    def forward(self, hidden_states, residual=None, orders=None, use_checkpoint: bool = False):
        incoming = hidden_states if residual is None else self.drop_path(hidden_states)
        hidden_states, residual = rms_norm_fn(incoming, self.norm.weight, residual=residual, prenorm=True,
                                              residual_in_fp32=True, eps=self.norm.eps)
        if use_checkpoint:
            hidden_states = torch.utils.checkpoint.checkpoint(self.mixer, hidden_states, orders, use_reentrant=False)
        else:
            hidden_states = self.mixer(hidden_states, orders)
        return hidden_states, residual


class LinearDecoder(nn.Module):
    """UTA student head (official `Linear_Decoder`): Linear to the CLIP width, then LayerNorm."""

    def __init__(self, output_dim: int, embed_dim: int):
        super().__init__()
        self.head = nn.Linear(embed_dim, output_dim)
        self.norm = nn.LayerNorm(output_dim)

    def forward(self, x):
        return self.norm(self.head(x))


def sinusoid_table(length: int, dim: int) -> torch.Tensor:
    """Fixed transformer sinusoids (1, length, dim): sin on even channels, cos on odd."""
    position = torch.arange(length, dtype=torch.float64)[:, None]
    rate = torch.pow(10000.0, 2 * (torch.arange(dim) // 2) / dim)
    angles = position / rate
    angles[:, 0::2] = torch.sin(angles[:, 0::2])
    angles[:, 1::2] = torch.cos(angles[:, 1::2])
    return angles.float()[None]


class VideoMamba(nn.Module):
    """`forward(x (B, 3, T, H, W), mask=None, use_image=False, keep_temporal=False) -> (x_vis, x_pool, x_clip)`.

    mask: bool (B, 1 + T'*N) in the [cls, frame-major patches] layout, True = hidden; cls must stay visible and
    every sample must keep the same number of tokens. Only visible tokens enter the blocks.
    x_vis: final-normed patch tokens without cls, (B, T'*N or visible count, D), canonical order.
    x_pool: pool_norm(cls + mean of tokens): (B, T', D) with keep_temporal (per-frame means), else (B, 1, D);
    without pool_norm (add_pool_norm=False) the un-normalised sum.
    x_clip: (K, B, visible incl. cls, clip_output_dim) when a mask is given and the model has a clip_decoder.
    """

    def __init__(self, cfg: VideoMambaConfig | None = None, **kwargs):
        super().__init__()
        cfg = cfg or VideoMambaConfig(**kwargs)
        self.cfg = cfg
        dim, depth = cfg.embed_dim, cfg.depth
        self.embed_dim = dim
        self.patch_embed = PatchEmbed3D(cfg.img_size, cfg.patch_size, cfg.kernel_size, cfg.channels, dim)
        num_patches = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, dim))
        self.temporal_pos_embedding = nn.Parameter(torch.zeros(1, cfg.num_frames // cfg.kernel_size, dim))
        dpr = torch.linspace(0, cfg.drop_path_rate, depth).tolist()
        block_rates = [0.0] + dpr  # block i drops mixer i-1's output; the model-level drop_path the last one
        self.layers = nn.ModuleList(
            Block(dim, i, cfg.ssm_cfg, cfg.norm_epsilon, block_rates[i], cfg.bimamba, cfg.scan_chunk_size)
            for i in range(depth))
        self.drop_path = DropPath(cfg.drop_path_rate)
        self.norm = RMSNorm(dim, eps=cfg.norm_epsilon)
        if cfg.add_pool_norm:
            self.pool_norm = nn.LayerNorm(dim)
        self.return_index = [depth - 1 - i * cfg.clip_student_return_interval for i in range(cfg.clip_return_layer)]
        if cfg.clip_return_layer > 0:
            self.clip_decoder = nn.ModuleList(
                LinearDecoder(cfg.clip_output_dim, dim) for _ in range(cfg.clip_return_layer))
        self.register_buffer("clip_pos_embed", sinusoid_table(1 + num_patches * self.temporal_pos_embedding.shape[1],
                                                              dim), persistent=False)
        self.register_buffer("clip_img_pos_embed", sinusoid_table(1 + num_patches, dim), persistent=False)
        self._init_weights()

    def _init_weights(self):
        """Official order: trunc-normal Linear / unit LayerNorm, pos_embed, then Mamba's out_proj rescale."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for layer in self.layers:
            nn.init.kaiming_uniform_(layer.mixer.out_proj.weight, a=math.sqrt(5))
            with torch.no_grad():
                layer.mixer.out_proj.weight /= math.sqrt(self.cfg.depth)

    def no_weight_decay(self):
        return {"pos_embed", "cls_token", "temporal_pos_embedding"}

    def set_scan_chunk_size(self, chunk_size: int | None):
        """Inference option: mix long sequences in chunks of `chunk_size` tokens (None = whole sequence)."""
        for layer in self.layers:
            layer.mixer.set_chunk_size(chunk_size)
        self.cfg.scan_chunk_size = chunk_size

    def embed(self, x: torch.Tensor, use_image: bool = False) -> tuple[torch.Tensor, int, int]:
        """Video -> tokens (B, 1 + T'*N, D) in the canonical layout, plus T' and N."""
        x = self.patch_embed(x)
        batch, dim, frames = x.shape[:3]
        x = x.flatten(3).permute(0, 2, 3, 1)  # (B, T', N, D), patches row-major
        x = x + self.pos_embed[:, None, 1:]
        if not use_image:
            if frames != self.temporal_pos_embedding.shape[1]:
                raise ValueError(f"got {frames} frames (after the tubelet) but temporal_pos_embedding has "
                                 f"{self.temporal_pos_embedding.shape[1]}; build the model with num_frames="
                                 f"{frames * self.cfg.kernel_size} (checkpoints interpolate on load)")
            x = x + self.temporal_pos_embedding[:, :, None]
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(batch, -1, -1)
        return torch.cat([cls, x.reshape(batch, -1, dim)], dim=1), frames, x.shape[2]

    def forward_features(self, x, mask=None, use_image=False):
        """-> (normed tokens incl. cls (B, Lv, D), stacked student features for UTA or None, T')."""
        x, frames, num_patches = self.embed(x, use_image)
        positions = None
        if mask is not None:
            mask = self._check_mask(mask, x.shape[:2])
            x = x[~mask].reshape(x.shape[0], -1, x.shape[-1])
            positions = (~mask).nonzero()[:, 1].view(x.shape[0], -1)
        plan = make_plan(self.cfg.scan_order, frames, num_patches, positions)
        if plan.layout is not None:
            x = gather_along(x, plan.layout, 1)
        hidden, residual, student = x, None, []
        for idx, layer in enumerate(self.layers):
            checkpointed = self.cfg.use_checkpoint and idx < self.cfg.checkpoint_num and torch.is_grad_enabled()
            hidden, residual = layer(hidden, residual, plan.paths, use_checkpoint=checkpointed)
            if idx - 1 in self.return_index:
                student.append(self.norm(residual.to(self.norm.weight.dtype)))
        hidden = rms_norm_fn(self.drop_path(hidden), self.norm.weight, residual=residual, prenorm=False,
                             residual_in_fp32=True, eps=self.norm.eps)
        if self.cfg.depth - 1 in self.return_index:
            student.append(residual)  # official quirk: the residual before the last mixer's output is added
        if plan.layout is not None:
            hidden = scatter_along(hidden, plan.layout, 1)
            student = [scatter_along(s, plan.layout, 1) for s in student]
        return hidden, (torch.stack(student) if student else None), frames

    def _check_mask(self, mask: torch.Tensor, shape) -> torch.Tensor:
        if mask.dtype != torch.bool:
            raise TypeError(f"mask must be a bool tensor (True = hidden), got {mask.dtype}")
        if tuple(mask.shape) != tuple(shape):
            raise ValueError(f"mask must have shape (B, 1 + T*N) = {tuple(shape)}, got {tuple(mask.shape)}")
        if mask[:, 0].any():
            raise ValueError("mask hides the cls token (column 0); cls must stay visible")
        visible = (~mask).sum(1)
        if (visible != visible[0]).any():
            raise ValueError(f"every sample must keep the same number of tokens, got {visible.tolist()}")
        return mask.to(self.cls_token.device)

    def forward(self, x, mask=None, use_image=False, keep_temporal=False):
        x_vis, student, frames = self.forward_features(x, mask, use_image)
        x_clip = None
        if mask is not None and student is not None and hasattr(self, "clip_decoder"):
            x_clip = self._decode_clip(student, mask, x_vis.shape[1], use_image)
        cls, x_vis = x_vis[:, :1], x_vis[:, 1:]
        if keep_temporal:
            pooled = cls + x_vis.reshape(x_vis.shape[0], frames, -1, x_vis.shape[-1]).mean(2)
        else:
            pooled = cls + x_vis.mean(1, keepdim=True)
        if self.cfg.add_pool_norm:
            pooled = self.pool_norm(pooled)
        return x_vis, pooled, x_clip

    def _decode_clip(self, student, mask, length, use_image):
        table = self.clip_img_pos_embed if use_image else self.clip_pos_embed
        if table.shape[1] != mask.shape[1]:
            table = sinusoid_table(mask.shape[1], self.embed_dim).to(student.device)
        pos = table.to(student.dtype).expand(mask.shape[0], -1, -1)[~mask.to(table.device)]
        pos = pos.view(mask.shape[0], length, -1)
        return torch.stack([decoder(student[k] + pos) for k, decoder in enumerate(self.clip_decoder)])


def _build(embed_dim: int, depth: int, overrides: dict) -> VideoMamba:
    """A registered size; any config field, the size's own included, can be overridden."""
    return VideoMamba(VideoMambaConfig(**{"embed_dim": embed_dim, "depth": depth, **overrides}))


@register_model
def videomamba_tiny(**overrides) -> VideoMamba:
    return _build(192, 24, overrides)


@register_model
def videomamba_small(**overrides) -> VideoMamba:
    return _build(384, 24, overrides)


@register_model
def videomamba_middle(**overrides) -> VideoMamba:
    return _build(576, 32, overrides)


@register_model
def videomamba_base(**overrides) -> VideoMamba:
    """Image-only size in the official release (ImageNet weights); use num_frames=1 and use_image=True."""
    return _build(768, 24, overrides)


@register_model
def videomamba_test_tiny(**overrides) -> VideoMamba:
    """A few-thousand-parameter VideoMamba for tests: width 32, 2 blocks, 32x32 frames, patch 8, 4 frames."""
    return _build(32, 2, {"img_size": 32, "patch_size": 8, "num_frames": 4, **overrides})
