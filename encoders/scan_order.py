"""Token orders for the bidirectional 3-D scan (VideoMamba paper, arXiv 2403.06977, Sec. 3.2 and Fig. 4).

The encoder always *speaks* the canonical layout `[cls, f0 (row-major patches), f1, ...]`: masks index it, and
`x_vis` and the pooled output come back in it. A scan order only changes the order in which the SSMs *read*
the tokens; the model permutes in before the blocks and un-permutes after them. cls stays at the head in
every order (the official models never move it).

Orders, with T frames of N patches (p = row-major patch index, t = frame):
  spatial_first      the official scan: [cls, (t0,p0) (t0,p1) ... (t0,pN-1), (t1,p0) ...]. The forward SSM reads
                     it, the backward SSM reads it reversed.
  temporal_first     [cls, (t0,p0) (t1,p0) ... (tT-1,p0), (t0,p1) ...]: each patch position through all frames,
                     then the next position; forward and backward SSMs read it and its reverse.
  spatiotemporal_v1  the paper's hybrid "conducting half of" both scans: the forward SSM reads spatial-first,
                     the backward SSM reads temporal-first reversed. Same cost as one bidirectional scan.
  spatiotemporal_v2  the hybrid "conducting full of them (2x computation)": forward and backward SSMs each read
                     both orders (4 scans per block), outputs summed.
The paper gives only the figure and that one sentence. Our choices where it is silent: in v1/v2 the forward
(backward) SSM parameters are shared by every forward (backward) read, so v1/v2 need no extra parameters and
load the official checkpoints; outputs of all reads are summed, like the official sum of the two directions.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

SCAN_ORDERS = ("spatial_first", "temporal_first", "spatiotemporal_v1", "spatiotemporal_v2")


def spatial_first(num_frames: int, num_patches: int) -> torch.Tensor:
    """Canonical position read at each step: the identity."""
    return torch.arange(1 + num_frames * num_patches)


def temporal_first(num_frames: int, num_patches: int) -> torch.Tensor:
    """Canonical position read at each step: cls, then patch 0 of every frame, patch 1 of every frame, ..."""
    patches = 1 + torch.arange(num_frames * num_patches).view(num_frames, num_patches).t().reshape(-1)
    return torch.cat([torch.zeros(1, dtype=torch.long), patches])


def invert(order: torch.Tensor) -> torch.Tensor:
    """rank[c] = step at which canonical position c is read."""
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=order.device)
    return rank


def restrict(order: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """The order on a subsequence: `positions` (B, Lv) are the canonical positions kept (ascending, e.g. the
    visible tokens); returns (B, Lv) indices into that subsequence, in the order `order` reads them."""
    return torch.argsort(invert(order).to(positions.device)[positions], dim=-1)


@dataclass(frozen=True)
class ScanPaths:
    """Orders the mixer's SSMs read, as indices into the stored sequence; None = the stored order itself.
    Each backward read is reversed before scanning."""

    forward: tuple
    backward: tuple


@dataclass(frozen=True)
class ScanPlan:
    """`layout`: index into the canonical (visible) tokens giving the stored order (None = canonical);
    `paths`: what each mixer reads relative to the stored order (None = official forward + reversed)."""

    layout: torch.Tensor | None
    paths: ScanPaths | None


def make_plan(name: str, num_frames: int, num_patches: int, positions: torch.Tensor | None = None) -> ScanPlan:
    """The plan for scan order `name`; `positions` (B, Lv) = canonical positions of the kept tokens, or None
    when all 1 + T*N tokens are kept."""
    if name not in SCAN_ORDERS:
        raise ValueError(f"unknown scan order {name!r}; choose from {', '.join(SCAN_ORDERS)}")
    if name == "spatial_first":
        return ScanPlan(None, None)
    tf = temporal_first(num_frames, num_patches)
    if positions is not None:
        tf = restrict(tf, positions)
    if name == "temporal_first":
        return ScanPlan(tf, None)
    if name == "spatiotemporal_v1":
        return ScanPlan(None, ScanPaths(forward=(None,), backward=(tf,)))
    return ScanPlan(None, ScanPaths(forward=(None, tf), backward=(None, tf)))


def gather_along(x: torch.Tensor, index: torch.Tensor, dim: int) -> torch.Tensor:
    """x read along `dim` in the order `index`: (L,) shared by the batch, or (B, L) per sample."""
    dim = dim % x.dim()
    if index.dim() == 1:
        return x.index_select(dim, index.to(x.device))
    return torch.gather(x, dim, _expand_index(index, x, dim))


def scatter_along(y: torch.Tensor, index: torch.Tensor, dim: int) -> torch.Tensor:
    """Inverse of `gather_along`: the element at step i goes back to position index[i]."""
    dim = dim % y.dim()
    out = torch.empty_like(y)
    if index.dim() == 1:
        return out.index_copy_(dim, index.to(y.device), y)
    return out.scatter_(dim, _expand_index(index, y, dim), y)


def _expand_index(index: torch.Tensor, x: torch.Tensor, dim: int) -> torch.Tensor:
    shape = [index.shape[0]] + [1] * (x.dim() - 1)
    shape[dim] = index.shape[1]
    return index.to(x.device).view(shape).expand(*x.shape[:dim], index.shape[1], *x.shape[dim + 1:])
