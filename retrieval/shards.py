"""WebDataset tar shards as video2dataset and img2dataset write them, read as a stream: nothing is unpacked to disk.

A sample is the consecutive members of one key: ``{key}.mp4`` (or another video or image suffix) with its caption
in ``{key}.txt`` and/or ``{key}.json`` (``{"caption": ...}``). Shards are named by a spec (`shard_list`): a .tar
path or URL, a brace pattern (``shards/{00000..00009}.tar``), a folder of .tar files, or a text file listing one
path or URL a line; URLs are http(s):// or file://.

`ShardStream` splits the shards across DDP ranks and then DataLoader workers (shard i goes to exactly one worker of
one rank) and cycles over its share without end, in a shuffled order per pass: streamed data has no known length, so
the training loop decides how many batches an epoch takes. A sample that does not decode is skipped and travels in
the next item's ``replaced`` list, as `training.data.ReplaceBadItems` does for indexed datasets.
"""
from __future__ import annotations

import hashlib
import json
import random
import re
import tarfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import torch
from torch.utils.data import IterableDataset, get_worker_info

from encoders.video_text import pre_text
from retrieval.corpora import AnnotationError, CorpusNotFound
from retrieval.datasets import BadItem, load_or_bad

VIDEO_SUFFIXES = ("mp4", "webm", "mkv", "avi", "mov", "m4v")
IMAGE_SUFFIXES = ("jpg", "jpeg", "png", "webp", "bmp")
URL_SCHEMES = ("http://", "https://", "file://")
_BRACE = re.compile(r"\{(\d+)\.\.(\d+)\}")


def expand_braces(pattern: str) -> list[str]:
    """``a/{000..002}.tar`` -> ``a/000.tar a/001.tar a/002.tar`` (numbers padded as the first bound is written);
    several ranges multiply."""
    match = _BRACE.search(pattern)
    if match is None:
        return [pattern]
    first, last = match.group(1), match.group(2)
    head, tail = pattern[:match.start()], pattern[match.end():]
    return [name for i in range(int(first), int(last) + 1)
            for name in expand_braces(f"{head}{i:0{len(first)}d}{tail}")]


def is_url(name: str) -> bool:
    return name.startswith(URL_SCHEMES)


def shard_list(spec: str) -> list[str]:
    """The shards a spec names (see the module doc). Local shards must exist (CorpusNotFound names the first that
    does not); URLs are opened only when read."""
    path = Path(spec)
    if not is_url(spec) and path.is_dir():
        shards = sorted(str(p) for p in path.glob("*.tar"))
        if not shards:
            raise CorpusNotFound(f"no .tar shards in the folder {path}")
        return shards
    if not is_url(spec) and path.suffix == ".txt":
        if not path.is_file():
            raise CorpusNotFound(f"no shard list at {path} (a text file naming one shard path or URL a line)")
        lines = [line.strip() for line in path.read_text().splitlines()]
        shards = [line for line in lines if line and not line.startswith("#")]
        if not shards:
            raise CorpusNotFound(f"the shard list {path} names no shard")
    else:
        shards = expand_braces(spec)
    missing = [s for s in shards if not is_url(s) and not Path(s).is_file()]
    if missing:
        raise CorpusNotFound(f"{len(missing)} of {len(shards)} shard(s) named by {spec!r} do not exist, e.g. "
                             f"{missing[0]}")
    return shards


def open_shard(name: str) -> BinaryIO:
    """A readable stream of a local shard or a URL (http(s) is streamed, not downloaded first)."""
    return urllib.request.urlopen(name, timeout=60) if is_url(name) else open(name, "rb")


def split_key(member: str) -> tuple[str, str]:
    """``dir/000123.mp4`` -> (``dir/000123``, ``mp4``): the suffix is everything after the first dot of the file name,
    as WebDataset reads it (``a.seg.json`` -> ``seg.json``)."""
    folder, _, name = member.rpartition("/")
    stem, _, suffix = name.partition(".")
    return (f"{folder}/{stem}" if folder else stem), suffix.lower()


def read_samples(name: str) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {suffix: bytes}) for every sample of one shard, streamed member by member."""
    with open_shard(name) as stream, tarfile.open(fileobj=stream, mode="r|*") as tar:
        key, parts = None, {}
        for member in tar:
            if not member.isfile():
                continue
            member_key, suffix = split_key(member.name)
            if member_key != key:
                if parts:
                    yield key, parts
                key, parts = member_key, {}
            parts[suffix] = tar.extractfile(member).read()
        if parts:
            yield key, parts


def sample_media(parts: dict[str, bytes], media: str) -> bytes | None:
    suffixes = VIDEO_SUFFIXES if media == "video" else IMAGE_SUFFIXES
    return next((parts[s] for s in suffixes if s in parts), None)


def sample_caption(parts: dict[str, bytes]) -> str | None:
    """The caption of a sample: its .txt, else the "caption" of its .json (video2dataset writes both)."""
    if "txt" in parts:
        text = parts["txt"].decode("utf-8", errors="replace").strip()
        if text:
            return text
    if "json" in parts:
        try:
            meta = json.loads(parts["json"])
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
        caption = meta.get("caption") if isinstance(meta, dict) else None
        return caption if isinstance(caption, str) and caption.strip() else None
    return None


def check_first_sample(shards: list[str], media: str) -> None:
    """Read the first sample of the first shard: a wrong URL, a tar of something else or samples without captions
    fail here, once and clearly, instead of inside a DataLoader worker."""
    try:
        key, parts = next(read_samples(shards[0]))
    except StopIteration:
        raise AnnotationError(f"shard {shards[0]} holds no files") from None
    except (OSError, tarfile.TarError) as exc:
        raise CorpusNotFound(f"cannot read shard {shards[0]}: {exc}") from None
    kinds = VIDEO_SUFFIXES if media == "video" else IMAGE_SUFFIXES
    if sample_media(parts, media) is None:
        raise AnnotationError(f"shard {shards[0]}: sample {key!r} has no {media} member (.{', .'.join(kinds)}); it "
                              f"has {', '.join('.' + s for s in parts)}")
    if sample_caption(parts) is None:
        raise AnnotationError(f"shard {shards[0]}: sample {key!r} has no caption ({key}.txt, or a {key}.json with "
                              "\"caption\")")


class ShardStream(IterableDataset):
    """Training items ``{"video", "caption", "sample_id", "replaced"}`` from shards, this rank's and this worker's
    share, cycled without end (see the module doc). Frames: ``rand`` sampling, the train transform when `augment`;
    images are ``image_frames``-frame clips, as in `retrieval.datasets.VideoTextTrainDataset`."""

    def __init__(self, shards: list[str], media: str = "video", num_frames: int = 8, size: int = 224,
                 image_frames: int = 1, augment: bool = True, seed: int = 0, rank: int = 0, world_size: int = 1):
        if len(shards) < world_size:
            raise ValueError(f"{len(shards)} shard(s) for {world_size} ranks: every rank needs at least one")
        self.shards, self.media, self.size, self.augment = shards, media, size, augment
        self.num_frames = image_frames if media == "image" else num_frames
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """A new shuffled order for (epoch, start): a resumed run does not replay the batches it began with."""
        self.epoch, self.start = epoch, start

    def my_shards(self) -> tuple[list[str], int]:
        """(this worker's shards, a number unique to this rank and worker)."""
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        return self.shards[self.rank::self.world_size][worker::workers], self.rank * workers + worker

    def __iter__(self) -> Iterator[dict]:
        shards, unique = self.my_shards()
        if not shards:  # more workers than this rank's shards: the others feed the loader
            return
        rng = random.Random(f"{self.seed}/{self.epoch}/{self.start}/{unique}")
        generator = torch.Generator().manual_seed(rng.randrange(2**62))
        bad: list[tuple[str, str]] = []
        while True:
            good_in_pass = 0
            for shard in rng.sample(shards, len(shards)):
                try:
                    for key, parts in read_samples(shard):
                        item = self._item(shard, key, parts, rng, generator)
                        if isinstance(item, str):
                            bad.append((f"{shard}#{key}", item))
                            continue
                        good_in_pass += 1
                        yield {**item, "replaced": bad}
                        bad = []
                except (OSError, tarfile.TarError) as exc:  # a shard cut short or unreachable: go on with the next
                    bad.append((shard, f"shard unreadable: {exc}"))
            if not good_in_pass:
                raise RuntimeError(f"no readable sample in {len(shards)} shard(s) ({', '.join(shards[:3])}...); "
                                   f"first problem: {bad[0][0]}: {bad[0][1]}" if bad else "the shards are empty")

    def _item(self, shard: str, key: str, parts: dict[str, bytes], rng: random.Random,
              generator: torch.Generator) -> dict | str:
        """The training item of one sample, or why it was skipped."""
        data, caption = sample_media(parts, self.media), sample_caption(parts)
        if data is None:
            return f"no {self.media} member (has {', '.join(parts)})"
        if caption is None:
            return "no caption (.txt or .json with \"caption\")"
        video = load_or_bad(0, f"{shard}#{key}", data, num_frames=self.num_frames, size=self.size, sample="rand",
                            train=self.augment, rng=rng, generator=generator)
        if isinstance(video, BadItem):
            return video.reason
        sample_id = int.from_bytes(hashlib.blake2b(f"{shard}#{key}".encode(), digest_size=7).digest(), "big")
        return {"video": video, "caption": pre_text(caption), "sample_id": sample_id}
