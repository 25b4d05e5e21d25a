"""Training batches of a fixed size even when files are bad.

retrieval.datasets returns a `BadItem` for a missing or undecodable file and its collate drops it; under
DDP that would give ranks different batch sizes (the VTC all-gather needs equal ones) and change the data
order on resume. Here a bad item is replaced by the next good index (deterministically), and the bad file
still travels in the batch's `skipped` list, so the SkipLog reports it exactly once."""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch.utils.data import Dataset

from retrieval.datasets import BadItem

Tokenize = Callable[[list[str]], tuple[torch.Tensor, torch.Tensor]]


class ReplaceBadItems(Dataset):
    def __init__(self, dataset: Dataset, max_tries: int = 64):
        self.dataset = dataset
        self.max_tries = max_tries

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        bad: list[tuple[str, str]] = []
        for attempt in range(min(self.max_tries, len(self.dataset))):
            item = self.dataset[(index + attempt) % len(self.dataset)]
            if not isinstance(item, BadItem):
                return {**item, "replaced": bad}
            bad.append((item.path, item.reason))
        raise RuntimeError(f"{len(bad)} consecutive bad files from index {index} (first: {bad[0][0]}: "
                           f"{bad[0][1]}); is the data folder right?")


def pretrain_collate(tokenize: Tokenize) -> Callable[[Sequence[dict]], dict]:
    """Samples `{"video", "caption", "sample_id", "replaced"}` -> the loop's batch: video (B,T,3,H,W),
    input_ids, attention_mask, idx (= sample_id, so captions of one video are VTC positives), skipped."""

    def collate(items: Sequence[dict]) -> dict:
        input_ids, attention_mask = tokenize([it["caption"] for it in items])
        return {"video": torch.stack([it["video"] for it in items]), "input_ids": input_ids,
                "attention_mask": attention_mask,
                "idx": torch.tensor([it["sample_id"] for it in items], dtype=torch.long),
                "skipped": [bad for it in items for bad in it["replaced"]]}

    return collate
