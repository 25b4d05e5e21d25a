"""Process-group setup for torchrun (one process per GPU, or several CPU processes over gloo) and a
resumable, rank-sharded batch sampler whose order depends only on (seed, epoch)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Iterator, Sequence

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto", timeout_s: int = 1800) -> DistInfo:
    """Read torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK); NCCL on CUDA, gloo on CPU.

    Without torchrun this is a plain single process. `device` is auto, cpu or cuda."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("device=cuda was asked for but CUDA is not available")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", timeout=timedelta(seconds=timeout_s),
                                device_id=dev if use_cuda else None)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_gather_object(obj: Any) -> list[Any]:
    if not dist.is_initialized():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean over ranks of a scalar (for logging losses that each rank computed on its shard)."""
    if not dist.is_initialized():
        return value
    value = value.detach().clone()
    dist.all_reduce(value)
    return value / dist.get_world_size()


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
