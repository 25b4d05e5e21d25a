"""torch Datasets over the corpora, robust to bad videos.

A missing, empty, truncated or undecodable file never stops a loop: ``__getitem__`` returns a
:class:`BadItem` (and warns with its path and reason), the dataset's ``collate`` drops those and lists
them in ``batch["skipped"]``, and a :class:`SkipLog` in the main process counts them and prints a summary.
This works unchanged with DataLoader worker processes (the bad items travel inside the batches)::

    pairs = load_pairs("msrvtt", root, "train")
    ds = VideoTextTrainDataset(pairs, num_frames=8, size=224)          # rand sampling + train transforms
    loader = DataLoader(ds, batch_size=32, shuffle=True, num_workers=2, collate_fn=ds.collate)
    skips = SkipLog("train")
    for batch in loader:
        skips.update(batch)                  # batch: video (B,T,3,H,W), caption [B], sample_id (B,), index (B,)
        if not len(batch["index"]):          # every item of this batch was bad
            continue
        ...
    skips.summary()                          # "train: skipped 3 bad files: ..."; skips.count, skips.items

    bench = load_benchmark("msrvtt", root)
    vids = VideoEvalDataset(bench, num_frames=8, size=224)              # middle sampling, test transform
    # batch["index"] says which videos of bench.videos are in the batch; texts are bench.texts
"""
from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from typing import Sequence

import torch
from torch.utils.data import Dataset

from media import VideoSource, load_video
from retrieval.corpora import Benchmark, Pairs


class BadMediaWarning(UserWarning):
    """A video or image was skipped because it could not be read."""


@dataclass(frozen=True)
class BadItem:
    index: int
    path: str
    reason: str


def load_or_bad(index: int, path: str, src: VideoSource | None = None, **kw) -> torch.Tensor | BadItem:
    """`load_video(src or path, **kw)`, or a BadItem naming `path` with the reason (and a BadMediaWarning)."""
    try:
        return load_video(path if src is None else src, **kw)
    except Exception as exc:  # any decoder failure: one bad file must not stop a loop
        reason = getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}"
        warnings.warn(f"skipping bad media {path}: {reason}", BadMediaWarning, stacklevel=2)
        return BadItem(index, path, reason)


class _SkippingDataset(Dataset):
    num_frames: int
    size: int

    def collate(self, items: Sequence[dict | BadItem]) -> dict:
        """Stack the good items; ``skipped`` is a list of ``(path, reason)`` for the bad ones."""
        good = [it for it in items if not isinstance(it, BadItem)]
        batch: dict = {"skipped": [(it.path, it.reason) for it in items if isinstance(it, BadItem)]}
        batch["video"] = (torch.stack([it["video"] for it in good]) if good
                          else torch.empty(0, self.num_frames, 3, self.size, self.size))
        batch["index"] = torch.tensor([it["index"] for it in good], dtype=torch.long)
        for key in good[0] if good else ():
            if key not in batch:
                values = [it[key] for it in good]
                batch[key] = torch.tensor(values) if isinstance(values[0], int) else values
        return batch


class VideoTextTrainDataset(_SkippingDataset):
    """(video or image, caption) pairs for contrastive training: ``rand`` frame sampling and the shared
    RandomResizedCrop + flip. Images are ``image_frames``-frame clips (the official image batches use 1).
    augment=False keeps the random frame sampling but only resizes: a flip turns "moves left" into a clip that
    moves right, a crop makes a "small" shape look medium, so captions that name directions or sizes (the
    synthetic corpus) would be contradicted by their own clips.
    Items: ``{"video": (T,3,H,W), "caption": str, "sample_id": int, "index": int}``."""

    def __init__(self, pairs: Pairs, num_frames: int = 8, size: int = 224, image_frames: int = 1,
                 train: bool = True, reader: str | None = None, augment: bool = True):
        self.pairs, self.size, self.train, self.reader, self.augment = pairs, size, train, reader, augment
        self.num_frames = image_frames if pairs.media == "image" else num_frames

    def __len__(self) -> int:
        return len(self.pairs.items)

    def __getitem__(self, index: int) -> dict | BadItem:
        pair = self.pairs.items[index]
        video = load_or_bad(index, pair.media, num_frames=self.num_frames, size=self.size,
                             train=self.train and self.augment,
                             sample="rand" if self.train else "middle", trimmed30=self.pairs.trimmed30,
                             reader=self.reader)
        if isinstance(video, BadItem):
            return video
        return {"video": video, "caption": pair.caption, "sample_id": pair.sample_id, "index": index}


class VideoEvalDataset(_SkippingDataset):
    """The videos of a benchmark (or a list of paths) with the official test-time sampling (interval
    middles, resize, no crop). Items: ``{"video": (T,3,H,W), "index": int}``."""

    def __init__(self, videos: Benchmark | Sequence[str], num_frames: int = 8, size: int = 224,
                 trimmed30: bool | None = None, reader: str | None = None):
        self.paths = list(videos.videos if isinstance(videos, Benchmark) else videos)
        if trimmed30 is None:
            trimmed30 = videos.trimmed30 if isinstance(videos, Benchmark) else False
        self.num_frames, self.size, self.trimmed30, self.reader = num_frames, size, trimmed30, reader

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict | BadItem:
        video = load_or_bad(index, self.paths[index], num_frames=self.num_frames, size=self.size,
                             sample="middle", trimmed30=self.trimmed30, reader=self.reader)
        return video if isinstance(video, BadItem) else {"video": video, "index": index}


class SkipLog:
    """Main-process tally of skipped files across batches (and worker processes)."""

    def __init__(self, name: str = "data"):
        self.name = name
        self.items: dict[str, str] = {}  # path -> reason (a file bad in two epochs counts once)

    def update(self, batch: dict) -> dict:
        for path, reason in batch.get("skipped", ()):
            self.items.setdefault(path, reason)
        return batch

    @property
    def count(self) -> int:
        return len(self.items)

    def reset(self) -> None:
        self.items.clear()

    def summary(self, file=sys.stderr, limit: int = 20) -> str:
        """Print (and return) one line per skipped file, up to ``limit``."""
        if not self.items:
            text = f"{self.name}: no bad files skipped"
        else:
            lines = [f"  {p}: {r}" for p, r in list(self.items.items())[:limit]]
            more = self.count - len(lines)
            text = "\n".join([f"{self.name}: skipped {self.count} bad file(s):", *lines]
                             + ([f"  ... and {more} more"] if more > 0 else []))
        if file is not None:
            print(text, file=file)
        return text

