"""A synthetic evaluation split generated on demand (once per settings and generator version), for evaluating
without downloading a benchmark."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import torch.distributed as dist

from retrieval.corpora import get_corpus, list_corpora
from retrieval.distributed import rank_world
from retrieval.synth import writer
from retrieval.synth.writer import SynthConfig, generate

OPT_IN_VIDEOS = 100  # the evaluation size of a split the generator leaves out by default (events)


def synthetic_root(bench: str, cache_dir: Path, videos: int | None, train_videos: int | None,
                   progress: bool = True) -> Path:
    """Generate (once) a synthetic data root holding only `bench`'s evaluation split, plus its train split when
    `train_videos` is given (0 = the generator's default size); every other corpus gets 0 clips."""
    spec, defaults = get_corpus(bench), SynthConfig(out="")
    corpus_counts = {c if c in vars(defaults) else f"{c}_{split}"
                     for c in list_corpora() for split in get_corpus(c).splits}
    counts = {name: 0 for name in corpus_counts if name in vars(defaults)}
    eval_field = f"{bench}_{spec.eval_split}"
    counts[eval_field] = videos or getattr(defaults, eval_field) or OPT_IN_VIDEOS
    if train_videos is not None:
        counts[f"{bench}_train"] = train_videos or getattr(defaults, f"{bench}_train")
    settings = {k: v for k, v in dataclasses.asdict(SynthConfig(out="", **counts)).items() if k != "out"}
    settings["generator_version"] = writer.GENERATOR_VERSION  # read at call time: tests swap it
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    root = cache_dir / "synth" / f"{bench}-{key}"
    if not (root / "manifest.json").is_file():
        if rank_world()[0] == 0:
            generate(SynthConfig(out=str(root), **counts), progress=progress)
        if rank_world()[1] > 1:
            dist.barrier()
    return root
