"""Evaluating a joint video-text model on one benchmark split: a plain function with explicit arguments, called by
`python -m retrieval.eval`, by fine-tuning after every epoch and by pretraining's held-out evaluation."""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch.distributed as dist
from torch.utils.data import DataLoader, Subset

from encoders.video_text import make_tokenize
from retrieval.corpora import Benchmark
from retrieval.datasets import BadMediaWarning, SkipLog, VideoEvalDataset
from retrieval.distributed import rank_world
from retrieval.embedding_cache import load_embeddings, save_embeddings
from retrieval.evaluator import EvalConfig, Embeddings, encode_texts, encode_videos, evaluate


@dataclass
class ClipLoading:
    """How benchmark videos become clips: frames (official test sampling, interval middles) and batching."""

    num_frames: int
    image_size: int
    batch_size: int = 8
    num_workers: int = 0


def evaluate_benchmark(model, tokenizer, bench: Benchmark, protocol: EvalConfig, clips: ClipLoading, device,
                       cache_file: Path | None = None) -> dict:
    """Encode (or load `cache_file`'s embeddings), score with the official protocol, and report the skipped
    videos and run facts under `skipped_videos` and `meta`."""
    started = time.perf_counter()
    emb, reasons = (load_embeddings(cache_file) if cache_file else None), {}
    cached = emb is not None
    if emb is None:
        emb, reasons = compute_embeddings(model, tokenizer, bench, protocol, clips, device)
        if cache_file and rank_world(protocol.split_across_ranks)[0] == 0:
            save_embeddings(cache_file, emb)
    encoded = time.perf_counter()
    results = evaluate(model, emb, bench.txt2vid, bench.vid2txt, protocol, groups=list(bench.groups.values()),
                       group_kinds=[bench.temporal.get(name, "") for name in bench.groups], device=device)
    results["skipped_videos"] = skipped_videos(bench, emb, reasons)
    results["meta"] = {"bench": bench.name, "split": bench.split, "num_frames": clips.num_frames, "sample": "middle",
                       "image_size": clips.image_size, "k_test": protocol.k_test, "embeddings_cached": cached,
                       "embeddings_file": str(cache_file) if cache_file else None,
                       "encode_seconds": round(encoded - started, 2),
                       "score_seconds": round(time.perf_counter() - encoded, 2)}
    return results


def video_batches(bench: Benchmark, clips: ClipLoading, skips: SkipLog, split_ranks: bool = True):
    """This rank's share of the benchmark videos as (video, index) batches; undecodable videos are dropped by the
    dataset and tallied in `skips`."""
    dataset = VideoEvalDataset(bench, num_frames=clips.num_frames, size=clips.image_size)
    rank, world = rank_world(split_ranks)
    loader = DataLoader(Subset(dataset, range(rank, len(dataset), world)), batch_size=clips.batch_size,
                        num_workers=clips.num_workers, collate_fn=dataset.collate)
    for batch in loader:
        skips.update(batch)
        if len(batch["index"]):
            yield batch["video"], batch["index"]


def compute_embeddings(model, tokenizer, bench: Benchmark, protocol: EvalConfig, clips: ClipLoading, device):
    """All embeddings of the benchmark, and the (path -> reason) of videos that could not be decoded."""
    tokenize = make_tokenize(tokenizer, bench.max_txt_len)
    text_tokens, text_mask, text_feat = encode_texts(model, tokenize, bench.texts, protocol, device)
    skips = SkipLog(f"{bench.name}/{bench.split}")
    batches = video_batches(bench, clips, skips, protocol.split_across_ranks)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BadMediaWarning)  # reported once, in the summary
        vision_tokens, vision_feat, ok = encode_videos(model, batches, len(bench.videos), device, protocol)
    reasons = dict(skips.items)
    if rank_world(protocol.split_across_ranks)[1] > 1:
        gathered = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, reasons)
        reasons = {path: why for part in gathered for path, why in part.items()}
    return Embeddings(text_tokens, text_mask, text_feat, vision_tokens, vision_feat, ok), reasons


def skipped_videos(bench: Benchmark, emb: Embeddings, reasons: dict[str, str]) -> dict[str, str]:
    """Every video left out, with the decoder's reason ("undecodable" when read from cached embeddings)."""
    return {p: reasons.get(p, "undecodable") for v, p in enumerate(bench.videos) if not bool(emb.video_ok[v])}
