"""`python -m retrieval.eval --bench didemo [--data-root DIR] --checkpoint PATH`: zero-shot video–text retrieval
with the official protocol, printed as a table and written as JSON (fine-tuning first: `python -m training.finetune`).

Without --data-root the synthetic split of the benchmark is generated once into the cache folder. Embeddings
are cached (keyed by checkpoint, benchmark, split and frame settings) so re-ranking settings can be changed
without re-encoding. Under torchrun the videos and ITM pairs are split across ranks.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from encoders.video_text import (DEMO_MODEL_ENV, VideoTextConfig, build_video_text_model, demo_model_path,
                                 load_video_text_model)
from retrieval.cli import UsageError, json_object, positive_int, user_errors
from retrieval.corpora import Benchmark, get_corpus, list_corpora, load_benchmark
from retrieval.distributed import init_distributed, rank_world
from retrieval.embedding_cache import embeddings_key
from retrieval.evaluation import ClipLoading, evaluate_benchmark
from retrieval.evaluator import EvalConfig
from retrieval.frame_average import FrameAveraged
from retrieval.report import format_table
from retrieval.synthetic import synthetic_root

DEFAULT_CACHE = Path(os.environ.get("VIDEOMAMBA_CACHE", Path.home() / ".cache" / "videomamba-retrieval"))
TINY_MODEL = "random-tiny"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m retrieval.eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bench", required=True, choices=list_corpora("benchmark"), help="the benchmark (required)")
    p.add_argument("--split", default=None, help="annotation split (default: the one the official config evaluates: "
                   "test, or val for anet)")
    p.add_argument("--data-root", default=None, help="folder with anno_downstream/<bench>_ret_<split>.json and the "
                   "videos (see retrieval/corpora.py); default: a synthetic split generated into the cache folder, "
                   "no download")
    p.add_argument("--checkpoint", default=None, help="saved model folder or official .pth (default: the demo "
                   f"model: ${DEMO_MODEL_ENV} or encoders/pretrained/videomamba_demo); "
                   f"'{TINY_MODEL}' builds a random tiny model (tests)")
    p.add_argument("--model-overrides", type=json_object, default={},
                   help="JSON object of VideoTextConfig fields for the checkpoint (default: {})")
    p.add_argument("--num-frames", type=positive_int, default=None, help="frames per video, middle sampling "
                   "(default: what the model was built for, 8 for official checkpoints; an official .pth is "
                   "interpolated to it)")
    p.add_argument("--image-size", type=positive_int, default=None, help="default: the vision encoder's img_size")
    p.add_argument("--batch-size", type=positive_int, default=8, help="videos per encoding batch (default: 8)")
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader workers decoding videos (default: 0)")
    p.add_argument("--k-test", type=positive_int, default=128,
                   help="candidates per query re-ranked by the matching head (default: 128, as the official configs)")
    p.add_argument("--itm-batch-size", type=positive_int, default=64, help="pairs per matching-head batch (default: 64)")
    p.add_argument("--no-rerank", action="store_true", help="report only the embedding (ITC) scores")
    p.add_argument("--dual-softmax", action="store_true", help="also report dual-softmax ITC scores")
    p.add_argument("--frame-average", action="store_true",
                   help="baseline: encode every frame alone (no temporal context) and average the frames")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="default: auto (cuda when available)")
    p.add_argument("--cache-dir", default=str(DEFAULT_CACHE), help="synthetic splits, cached embeddings and results "
                   "(default: $VIDEOMAMBA_CACHE or ~/.cache/videomamba-retrieval; now %(default)s)")
    p.add_argument("--no-cache", action="store_true", help="re-encode even when cached embeddings exist")
    p.add_argument("--synth-videos", type=positive_int, default=None,
                   help="videos of a generated synthetic evaluation split (default: the generator's, e.g. 1000 for "
                   "msrvtt)")
    p.add_argument("--output", default=None, help="JSON results file (default: <cache>/results/<bench>-<split>.json)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (for logs)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random tiny model and of fine-tuning (default: 0)")
    return p


def tiny_config(num_frames: int, seed: int) -> VideoTextConfig:
    """A randomly initialised VideoTextModel small enough for tests: test-size VideoMamba, one text and one
    fusion layer of MiniLM (real tokenizer)."""
    torch.manual_seed(seed)
    return VideoTextConfig(vision_model="videomamba_test_tiny", vision_overrides={"num_frames": num_frames},
                           text_layers=1, fusion_layers=1, text_pretrained=False, mlm=False, embed_dim=32)


def load_model(args) -> tuple[torch.nn.Module, object, str]:
    """(model, tokenizer, cache key of the weights). Official checkpoints go through `load_video_text_model`,
    which renames `text_encoder.bert.*` and drops `clip_teacher.*` / `text_encoder.cls.*` itself."""
    overrides = args.model_overrides
    if args.checkpoint == TINY_MODEL:
        frames = args.num_frames or 8
        model, tokenizer = build_video_text_model(tiny_config(frames, args.seed))
        return model.eval(), tokenizer, f"{TINY_MODEL}-seed{args.seed}-f{frames}"
    demo = Path(demo_model_path())
    if not args.checkpoint and not demo.exists():
        raise UsageError(f"no --checkpoint given and no demo model at {demo}; pass --checkpoint PATH "
                         f"(a saved model folder or an official .pth) or --checkpoint {TINY_MODEL}")
    path = Path(args.checkpoint or demo)
    if not path.exists():
        raise UsageError(f"--checkpoint {args.checkpoint!r} does not exist (a saved model folder, e.g. a training "
                         "run's <output>/model, or an official .pth)")
    if path.is_file() and args.num_frames:  # the loader interpolates the temporal position embedding
        overrides = {**overrides, "vision_overrides": {"num_frames": args.num_frames,
                                                       **overrides.get("vision_overrides", {})}}
    unknown = sorted(set(overrides) - {f.name for f in fields(VideoTextConfig)})
    if unknown:
        raise UsageError(f"--model-overrides: unknown VideoTextConfig field(s) {', '.join(unknown)}")
    model, tokenizer = load_video_text_model(str(path), **overrides)
    if args.num_frames and args.num_frames != model.num_frames:
        raise UsageError(f"{path} was saved for {model.num_frames} frames; evaluate it with "
                         f"--num-frames {model.num_frames}")
    return model, tokenizer, _weights_key(path, overrides)


def _weights_key(path: Path, overrides: dict) -> str:
    files = sorted(p for p in ([path] if path.is_file() else path.rglob("*")) if p.is_file())
    stamp = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    return hashlib.sha256(json.dumps([stamp, overrides], sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Run:
    """Everything a command-line evaluation works with, set up from its arguments."""

    args: argparse.Namespace
    device: torch.device
    data_root: str
    bench: Benchmark
    model: torch.nn.Module
    tokenizer: object
    model_key: str  # "" when the weights are not a file's (tuned in this process): nothing is cached
    protocol: EvalConfig
    clips: ClipLoading


def set_up(args: argparse.Namespace, train_videos: int | None = None) -> Run:
    """Device (joining torchrun), data (a generated synthetic split without --data-root, with a train split of
    `train_videos` when given), model and the evaluation settings."""
    splits = get_corpus(args.bench).splits
    if args.split is not None and args.split not in splits:
        raise UsageError(f"--split {args.split!r}: {args.bench} has the splits {', '.join(splits)}")
    try:
        device = init_distributed(args.device).device
    except RuntimeError as err:
        raise UsageError(str(err)) from None
    data_root = args.data_root or str(synthetic_root(args.bench, Path(args.cache_dir), args.synth_videos,
                                                   train_videos, progress=not args.no_progress))
    bench = load_benchmark(args.bench, data_root, args.split, require_media=True)
    model, tokenizer, model_key = load_model(args)
    protocol = EvalConfig(k_test=args.k_test, itm_batch_size=args.itm_batch_size, rerank=not args.no_rerank,
                          dual_softmax=args.dual_softmax, progress=not args.no_progress)
    clips = ClipLoading(num_frames=model.num_frames, image_size=args.image_size or model.image_size,
                        batch_size=args.batch_size, num_workers=args.num_workers)
    return Run(args, device, data_root, bench, model.to(device), tokenizer, model_key, protocol, clips)


def evaluate_run(run: Run) -> dict:
    """Evaluate (the frame-averaged baseline with --frame-average), print the table and write the JSON."""
    args, bench = run.args, run.bench
    model = FrameAveraged(run.model) if args.frame_average else run.model
    cache_file = None
    if run.model_key and not args.no_cache:
        key = embeddings_key(run.model_key, bench.name, bench.split, run.data_root, len(bench.videos),
                             len(bench.texts), bench.max_txt_len, run.clips.num_frames, run.clips.image_size,
                             args.frame_average)
        cache_file = Path(args.cache_dir) / "embeddings" / f"{bench.name}-{bench.split}-{key}.safetensors"
    results = evaluate_benchmark(model, run.tokenizer, bench, run.protocol, run.clips, run.device, cache_file)
    results["meta"].update(data_root=run.data_root, checkpoint=args.checkpoint, frame_average=args.frame_average)
    if rank_world()[0] == 0:
        counts = results["counts"]
        title = (f"{bench.name} ({bench.split}): {counts['videos_evaluated']}/{counts['videos']} videos, "
                 f"{counts['texts_evaluated']}/{counts['texts']} texts, k_test={run.protocol.k_test}")
        print(format_table(results, title))
        if results["skipped_videos"]:
            print(f"skipped {len(results['skipped_videos'])} undecodable video(s):")
            for path, reason in results["skipped_videos"].items():
                print(f"  {path}: {reason}")
        out = Path(args.output or Path(args.cache_dir) / "results" / f"{bench.name}-{bench.split}.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1))
        print(f"results written to {out}")
    return results


def no_download(bench: str) -> str:
    """The command that evaluates `bench` without downloading it."""
    return f"omit --data-root and a synthetic {bench} split is generated (python -m retrieval.eval --bench {bench})"


def main(argv=None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    with user_errors(parser, no_download=no_download(args.bench)):
        return evaluate_run(set_up(args))


if __name__ == "__main__":
    main(sys.argv[1:])
