"""Token masks for masked video modelling, in the encoder's `(B, 1 + T*N)` layout (True = hidden, cls visible).

Patches are indexed frame-major, row-major inside a frame (`[cls, f0 p0..pN-1, f1 ...]`). Every mask hides the
same number of tokens per sample, so visible tokens stack into a dense batch.
"""
from __future__ import annotations

import torch

MASK_TYPES = ("random", "tube", "tube_row", "random_row", "attention")


def _check_ratio(ratio: float):
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"mask ratio must be in [0, 1), got {ratio}")


def _with_cls(patch_mask: torch.Tensor) -> torch.Tensor:
    """(B, T*N) patch mask → (B, 1+T*N) with a visible cls in front."""
    cls = torch.zeros(patch_mask.shape[0], 1, dtype=torch.bool, device=patch_mask.device)
    return torch.cat([cls, patch_mask.bool()], 1)


def _hide_first(scores: torch.Tensor, num_hidden: int) -> torch.Tensor:
    """Per row, hide the `num_hidden` entries with the smallest score (scores are random or sampled ranks)."""
    order = scores.argsort(dim=-1)
    mask = torch.zeros_like(scores, dtype=torch.bool)
    return mask.scatter(-1, order[..., :num_hidden], True)


def random_mask(B: int, T: int, N: int, ratio: float, generator=None, device=None) -> torch.Tensor:
    """Hide `int(ratio*T*N)` patches drawn uniformly over all frames."""
    _check_ratio(ratio)
    scores = torch.rand(B, T * N, generator=generator, device=device)
    return _with_cls(_hide_first(scores, int(ratio * T * N)))


def tube_mask(B: int, T: int, N: int, ratio: float, generator=None, device=None) -> torch.Tensor:
    """Hide the same `int(ratio*N)` spatial positions in every frame."""
    _check_ratio(ratio)
    spatial = _hide_first(torch.rand(B, 1, N, generator=generator, device=device), int(ratio * N))
    return _with_cls(spatial.expand(B, T, N).reshape(B, T * N))


def tube_row_mask(B: int, T: int, H: int, W: int, ratio: float, generator=None, device=None) -> torch.Tensor:
    """Hide `int(ratio*H)` whole patch rows per frame, rows re-drawn for each frame (as the official generator)."""
    _check_ratio(ratio)
    rows = _hide_first(torch.rand(B, T, H, generator=generator, device=device), int(ratio * H))
    return _with_cls(rows[..., None].expand(B, T, H, W).reshape(B, T * H * W))


def random_row_mask(B: int, T: int, H: int, W: int, ratio: float, generator=None, device=None) -> torch.Tensor:
    """Hide `T*int(ratio*H)` patch rows drawn over all T*H rows of the clip."""
    _check_ratio(ratio)
    rows = _hide_first(torch.rand(B, T * H, generator=generator, device=device), T * int(ratio * H))
    return _with_cls(rows[..., None].expand(B, T * H, W).reshape(B, T * H * W))


def attention_mask(cls_attn: torch.Tensor, B: int, T: int, ratio: float, generator=None) -> torch.Tensor:
    """Keep `N - int(ratio*N)` patches per frame, sampled without replacement with probability ∝ the teacher's
    cls→patch attention `cls_attn` (B*T, N): salient patches are likely visible."""
    _check_ratio(ratio)
    if cls_attn.dim() != 2 or cls_attn.shape[0] != B * T:
        raise ValueError(f"cls_attn must be (B*T={B * T}, N), got {tuple(cls_attn.shape)}")
    N = cls_attn.shape[1]
    num_visible = N - int(ratio * N)
    weights = cls_attn.float().clamp_min(0) + 1e-12
    order = torch.multinomial(weights, N, replacement=False, generator=generator)
    mask = torch.ones(B * T, N, dtype=torch.bool, device=cls_attn.device)
    mask.scatter_(1, order[:, :num_visible], False)
    return _with_cls(mask.view(B, T * N))


def make_mask(mask_type: str, B: int, T: int, grid: tuple[int, int], ratio: float,
              cls_attn: torch.Tensor | None = None, generator=None, device=None) -> torch.Tensor:
    """Build a (B, 1+T*H*W) mask of `mask_type`; "attention" needs the teacher's `cls_attn`."""
    H, W = grid
    if mask_type == "random":
        return random_mask(B, T, H * W, ratio, generator, device)
    if mask_type == "tube":
        return tube_mask(B, T, H * W, ratio, generator, device)
    if mask_type == "tube_row":
        return tube_row_mask(B, T, H, W, ratio, generator, device)
    if mask_type == "random_row":
        return random_row_mask(B, T, H, W, ratio, generator, device)
    if mask_type == "attention":
        if cls_attn is None:
            raise ValueError("attention masking needs the teacher's cls attention (B*T, N); the teacher returned none")
        return attention_mask(cls_attn, B, T, ratio, generator)
    raise ValueError(f"unknown mask type {mask_type!r}; choose from {MASK_TYPES}")
