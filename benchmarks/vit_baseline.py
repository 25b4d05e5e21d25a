"""ViT-Ti with joint space-time attention: the baseline of the official speed test (`deit_tiny_patch16_224`
applied to all T*196 tokens at once). DeiT-Ti: width 192, depth 12, 3 heads, MLP 768, patch 16.
Attention is `F.scaled_dot_product_attention`, so torch may pick a memory-efficient (flash) CPU kernel."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class ViTConfig:
    img_size: int = 224
    patch_size: int = 16
    num_frames: int = 8
    embed_dim: int = 192
    depth: int = 12
    num_heads: int = 3
    mlp_ratio: float = 4.0


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        batch, length, dim = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.num_heads, dim // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(batch, length, dim))


class ViTBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = nn.Linear(dim, int(dim * mlp_ratio))
        self.fc2 = nn.Linear(int(dim * mlp_ratio), dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class VideoViT(nn.Module):
    """forward(x (B, 3, T, H, W)) -> final-normed cls feature (B, D); every token attends to every token."""

    def __init__(self, cfg: ViTConfig | None = None):
        super().__init__()
        cfg = cfg or ViTConfig()
        dim = cfg.embed_dim
        self.patch_embed = nn.Conv3d(3, dim, kernel_size=(1, cfg.patch_size, cfg.patch_size),
                                     stride=(1, cfg.patch_size, cfg.patch_size))
        num_patches = (cfg.img_size // cfg.patch_size) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, num_patches + 1, dim) * 0.02)
        self.temporal_embed = nn.Parameter(torch.zeros(1, cfg.num_frames, 1, dim))
        self.blocks = nn.ModuleList(ViTBlock(dim, cfg.num_heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x):
        x = self.patch_embed(x).flatten(3).permute(0, 2, 3, 1)  # (B, T, N, D)
        x = x + self.pos_embed[:, None, 1:] + self.temporal_embed
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x.flatten(1, 2)], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[:, 0]


def vit_tiny(num_frames: int = 8, img_size: int = 224) -> VideoViT:
    return VideoViT(ViTConfig(num_frames=num_frames, img_size=img_size))
