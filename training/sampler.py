"""A resumable, rank-sharded batch sampler whose order depends only on (seed, epoch)."""
from __future__ import annotations

from typing import Iterator, Sequence

import torch


class ShardedBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Batches of dataset indices for one rank: a permutation from (seed, epoch), cut into global batches
    of `batch_size * world_size`, each rank taking its contiguous slice of every global batch.

    Every rank sees the same number of batches (the last incomplete global batch is dropped), so
    collective ops never hang; `start_batch` skips batches already consumed, for exact resume.

    `groups` (one id or None per index) shuffles each group as a unit, so the clips of a hard-negative group
    (a clip and its reversed or reordered twin) land side by side, nearly always in one batch: the contrastive
    and matching losses then see the negative that differs only in time, which random batches almost never hold."""

    def __init__(self, dataset_len: int, batch_size: int, rank: int = 0, world_size: int = 1,
                 seed: int = 0, shuffle: bool = True, groups: Sequence[str | None] | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if dataset_len < batch_size * world_size:
            raise ValueError(f"dataset of {dataset_len} samples is smaller than one global batch "
                             f"({batch_size} x {world_size} ranks)")
        self.dataset_len, self.batch_size = dataset_len, batch_size
        self.rank, self.world_size = rank, world_size
        self.seed, self.shuffle = seed, shuffle
        if groups is not None and len(groups) != dataset_len:
            raise ValueError(f"groups has {len(groups)} entries for a dataset of {dataset_len}")
        self.units = _units(groups) if groups is not None else None
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def __len__(self) -> int:
        return self.dataset_len // (self.batch_size * self.world_size)

    def global_batches(self) -> list[list[int]]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + 1_000_003 * self.epoch)
            if self.units is None:
                order = torch.randperm(self.dataset_len, generator=g).tolist()
            else:
                order = [i for u in torch.randperm(len(self.units), generator=g).tolist() for i in self.units[u]]
        else:
            order = list(range(self.dataset_len))
        step = self.batch_size * self.world_size
        return [order[i:i + step] for i in range(0, len(self) * step, step)]

    def __iter__(self) -> Iterator[list[int]]:
        lo, hi = self.rank * self.batch_size, (self.rank + 1) * self.batch_size
        for batch in self.global_batches()[self.start_batch:]:
            yield batch[lo:hi]


def _units(groups: Sequence[str | None]) -> list[list[int]]:
    """Indices sharing a group id form one unit (in index order); an index without a group is its own unit."""
    units: list[list[int]] = []
    by_group: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        if g is None:
            units.append([i])
        elif g in by_group:
            by_group[g].append(i)
        else:
            by_group[g] = [i]
            units.append(by_group[g])
    return units
