"""Per-sample seeding, so random frame sampling and augmentation depend only on (seed, epoch, index) and
not on how many samples a process or worker drew before: a resumed run, or a run with a different
number of workers, reads exactly the same clips."""
from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import Dataset


class SeededDataset(Dataset):
    """Wraps a dataset; item i of epoch e is produced under RNG seed f(seed, e, i), and the caller's
    RNG streams (python, numpy, torch CPU) are left exactly as they were."""

    def __init__(self, dataset: Dataset, seed: int = 0):
        self.dataset = dataset
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str):
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, index: int):
        sample_seed = (self.seed * 1_000_003 + self.epoch * 7_919 + int(index)) % (2**31 - 1)
        py_state, np_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            random.seed(sample_seed)
            np.random.seed(sample_seed)
            torch.manual_seed(sample_seed)
            try:
                return self.dataset[index]
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)
