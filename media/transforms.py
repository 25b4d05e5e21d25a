"""The official transforms in torch (no torchvision): train = one RandomResizedCrop (scale 0.5-1, bicubic) + flip
shared by all frames of a clip, test = bicubic resize to ``size x size``; then /255 and ImageNet normalization."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize(frames: torch.Tensor) -> torch.Tensor:
    """(T, 3, H, W) in [0, 255] -> /255 and ImageNet mean/std."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1)
    return (frames / 255.0 - mean) / std


def resize(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic with antialias, rounded and clamped as torchvision does on uint8 frames."""
    if tuple(frames.shape[-2:]) == size:
        return frames
    out = F.interpolate(frames, size=size, mode="bicubic", align_corners=False, antialias=True)
    return out.round_().clamp_(0, 255)


def random_resized_crop_box(height: int, width: int, scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3),
                            generator: torch.Generator | None = None) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a RandomResizedCrop (torchvision's rule: 10 tries, then a centre crop)."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * torch.empty(1).uniform_(*scale, generator=generator).item()
        aspect = math.exp(torch.empty(1).uniform_(*log_ratio, generator=generator).item())
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def train_transform(frames: torch.Tensor, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(T, 3, H, W) uint8 -> normalized float; one crop box and one flip decision for the whole clip."""
    x = frames.float()
    top, left, h, w = random_resized_crop_box(x.shape[-2], x.shape[-1], generator=generator)
    x = resize(x[..., top:top + h, left:left + w], (size, size))
    if torch.rand(1, generator=generator).item() < 0.5:
        x = x.flip(-1)
    return normalize(x)


def test_transform(frames: torch.Tensor, size: int) -> torch.Tensor:
    """(T, 3, H, W) uint8 -> bicubic resize to size x size (aspect not kept), normalized float."""
    return normalize(resize(frames.float(), (size, size)))
