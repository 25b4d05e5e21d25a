"""The standard corpora: where their annotations and videos live, how their captions are read, and loaders
that turn an annotation file into training pairs or an evaluation benchmark.

Layout under a data root (what ``python -m retrieval.synth`` writes, and how the official annotation
files are usually arranged)::

    ROOT/anno_pretrain/webvid_train.json  (or WebVid's CSV)   ROOT/WebVid/<page_dir>/<videoid>.mp4
    ROOT/anno_downstream/msrvtt_ret_test1k.json ...           ROOT/MSRVTT_Videos/video7010.mp4 ...

Text handling per corpus: ``single`` (one str caption per record; several records may share a video),
``multi`` (a caption list = several ground-truth texts of one video, MSVD) and ``paragraph`` (a caption
list of sentences joined with spaces, DiDeMo/ActivityNet). Captions pass through the official
:func:`retrieval.text.pre_text`. Records may carry ``"hard_negative_group"`` and ``"temporal"`` (synthetic
corpora: clips that differ only in time order); benchmarks expose them for temporal accuracy.

    pairs = load_pairs("msrvtt", root, split="train")       # Pairs: media paths, captions, sample ids
    bench = load_benchmark("msrvtt", root)                   # Benchmark: texts, videos, txt2vid, vid2txt
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from retrieval.text import pre_text

ANNO_PRETRAIN = "anno_pretrain"
ANNO_DOWNSTREAM = "anno_downstream"


class AnnotationError(ValueError):
    """A malformed annotation file; the message names the file, the record index and the field."""


@dataclass(frozen=True)
class CorpusSpec:
    name: str
    kind: str  # "pretrain" (a training source) or "benchmark" (retrieval evaluation)
    media: str  # "video" or "image"
    text: str  # "single", "multi" or "paragraph"
    max_txt_len: int  # tokenizer max_length used by the official configs
    splits: dict[str, str]  # split -> standard annotation file name
    media_dir: str  # standard folder of the videos/images under the data root
    eval_split: str | None = None
    trimmed30: bool = False  # decode only the first 30 s (DiDeMo)

    @property
    def anno_dir(self) -> str:
        return ANNO_PRETRAIN if self.kind == "pretrain" else ANNO_DOWNSTREAM

    def anno_path(self, root: str | os.PathLike, split: str) -> Path:
        if split not in self.splits:
            raise KeyError(f"corpus {self.name!r} has no split {split!r}; splits: {', '.join(self.splits)}")
        return Path(root) / self.anno_dir / self.splits[split]

    def media_root(self, root: str | os.PathLike) -> Path:
        return Path(root) / self.media_dir


CORPORA: dict[str, CorpusSpec] = {}


def register_corpus(spec: CorpusSpec) -> CorpusSpec:
    if spec.name in CORPORA:
        raise ValueError(f"corpus {spec.name!r} is registered twice")
    CORPORA[spec.name] = spec
    return spec


def get_corpus(name: str) -> CorpusSpec:
    if name not in CORPORA:
        raise KeyError(f"unknown corpus {name!r}; registered: {', '.join(sorted(CORPORA))}")
    return CORPORA[name]


def list_corpora(kind: str | None = None) -> list[str]:
    return sorted(n for n, s in CORPORA.items() if kind is None or s.kind == kind)


register_corpus(CorpusSpec("webvid", "pretrain", "video", "single", 32,
                           {"train": "webvid_train.json", "train_csv": "webvid_train.csv"}, "WebVid"))
register_corpus(CorpusSpec("cc3m", "pretrain", "image", "single", 32, {"train": "cc3m_train.json"}, "CC3M"))
register_corpus(CorpusSpec("msrvtt", "benchmark", "video", "single", 32,
                           {"train": "msrvtt_ret_train9k.json", "test": "msrvtt_ret_test1k.json"},
                           "MSRVTT_Videos", eval_split="test"))
register_corpus(CorpusSpec("didemo", "benchmark", "video", "paragraph", 64,
                           {"train": "didemo_ret_train.json", "val": "didemo_ret_val.json",
                            "test": "didemo_ret_test.json"}, "DiDeMo", eval_split="test", trimmed30=True))
register_corpus(CorpusSpec("anet", "benchmark", "video", "paragraph", 150,
                           {"train": "anet_ret_train.json", "val": "anet_ret_val.json"}, "ActivityNet",
                           eval_split="val"))
register_corpus(CorpusSpec("lsmdc", "benchmark", "video", "single", 96,
                           {"train": "lsmdc_ret_train.json", "test": "lsmdc_ret_test_1000.json"}, "LSMDC",
                           eval_split="test"))
register_corpus(CorpusSpec("msvd", "benchmark", "video", "multi", 64,
                           {"train": "msvd_ret_train.json", "test": "msvd_ret_test.json"}, "MSVD_Videos",
                           eval_split="test"))
