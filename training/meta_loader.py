"""Step-wise interleaving of several loaders (video and image corpora), as the official MetaLoader does:
each epoch visits every batch of every loader once, in a random loader order drawn from (seed, epoch).

All ranks draw the same order from the same seed, so they run the same loader at the same step (the
official code broadcasts the order from rank 0; a shared seed gives the same result without a collective).
A position inside the epoch is enough to resume: each loader's sampler skips the batches already used.

A streamed loader (over an IterableDataset such as `retrieval.shards.ShardStream`) has no length of its own: it
counts `stream_steps` batches an epoch, and a resumed epoch draws a fresh order instead of replaying the stream."""
from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import DataLoader, IterableDataset

from training.sampler import ShardedBatchSampler


def streamed(loader: DataLoader) -> bool:
    return isinstance(loader.dataset, IterableDataset)


class MetaLoader:
    def __init__(self, loaders: dict[str, DataLoader], seed: int = 0, stream_steps: int = 0):
        if not loaders:
            raise ValueError("MetaLoader needs at least one loader")
        for name, loader in loaders.items():
            if streamed(loader):
                if stream_steps < 1:
                    raise ValueError(f"loader {name!r} is streamed: give stream_steps, its batches per epoch")
            elif not isinstance(loader.batch_sampler, ShardedBatchSampler):
                raise TypeError(f"loader {name!r} must use a ShardedBatchSampler as batch_sampler "
                                "(so that its position can be resumed)")
        self.loaders = loaders
        self.names = list(loaders)
        self.seed = seed
        self.stream_steps = stream_steps

    def steps(self, name: str) -> int:
        """Batches of loader `name` in one epoch."""
        loader = self.loaders[name]
        return self.stream_steps if streamed(loader) else len(loader)

    def batch_size(self, name: str) -> int:
        """Clips per rank in one batch of loader `name`."""
        loader = self.loaders[name]
        return loader.batch_size if streamed(loader) else loader.batch_sampler.batch_size

    def __len__(self) -> int:
        return sum(self.steps(name) for name in self.names)

    def order(self, epoch: int) -> list[str]:
        """The loader name used at each step of `epoch` (identical on every rank)."""
        slots = [name for name in self.names for _ in range(self.steps(name))]
        g = torch.Generator().manual_seed(self.seed * 7919 + epoch)
        return [slots[i] for i in torch.randperm(len(slots), generator=g).tolist()]

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[str, object]]:
        """Yield (loader name, batch) for steps start, start+1, ... of `epoch`."""
        order = self.order(epoch)
        if not 0 <= start <= len(order):
            raise ValueError(f"resume position {start} is outside epoch of {len(order)} steps")
        iterators = {}
        with torch.random.fork_rng(devices=[]):  # starting iterators must not move the global RNG
            for name, loader in self.loaders.items():
                done = order[:start].count(name)
                if streamed(loader):
                    loader.dataset.set_epoch(epoch, start=done)
                else:
                    loader.batch_sampler.set_epoch(epoch, start_batch=done)
                    if hasattr(loader.dataset, "set_epoch"):
                        loader.dataset.set_epoch(epoch)
                iterators[name] = iter(loader)
        for name in order[start:]:
            yield name, next(iterators[name])
