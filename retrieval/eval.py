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
from dataclasses import dataclass
from pathlib import Path

import torch

from encoders.video_text import (DEMO_MODEL_ENV, VideoTextConfig, build_video_text_model, demo_model_path,
                                 load_video_text_model)
from retrieval.corpora import Benchmark, list_corpora, load_benchmark
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
    p.add_argument("--bench", required=True, choices=list_corpora("benchmark"))
    p.add_argument("--split", default=None, help="annotation split (default: the one the official config evaluates)")
    p.add_argument("--data-root", default=None, help="folder with anno_downstream/ and the videos; "
                   "omitted: a synthetic split is generated into the cache folder")
    p.add_argument("--checkpoint", default=None, help="saved model folder or official .pth (default: the demo "
                   f"model: ${DEMO_MODEL_ENV} or encoders/pretrained/videomamba_demo); "
                   f"'{TINY_MODEL}' builds a random tiny model (tests)")
    p.add_argument("--model-overrides", default="{}", help="JSON of VideoTextConfig fields for the checkpoint")
    p.add_argument("--num-frames", type=int, default=None, help="frames per video, middle sampling (default: what "
                   "the model was built for, 8 for official checkpoints; an official .pth is interpolated to it)")
    p.add_argument("--image-size", type=int, default=None, help="default: the vision encoder's img_size")
    p.add_argument("--batch-size", type=int, default=8, help="videos per encoding batch")
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--k-test", type=int, default=128)
    p.add_argument("--itm-batch-size", type=int, default=64)
    p.add_argument("--no-rerank", action="store_true", help="report only the embedding (ITC) scores")
    p.add_argument("--dual-softmax", action="store_true", help="also report dual-softmax ITC scores")
    p.add_argument("--frame-average", action="store_true",
                   help="baseline: encode every frame alone (no temporal context) and average the frames")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--cache-dir", default=str(DEFAULT_CACHE))
    p.add_argument("--no-cache", action="store_true", help="re-encode even when cached embeddings exist")
    p.add_argument("--synth-videos", type=int, default=None,
                   help="videos of a generated synthetic evaluation split (default: the generator's)")
    p.add_argument("--output", default=None, help="JSON results file (default: <cache>/results/<bench>-<split>.json)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--seed", type=int, default=0, help="seed of the random tiny model (and of fine-tuning)")
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
    overrides = json.loads(args.model_overrides)
    if args.checkpoint == TINY_MODEL:
        frames = args.num_frames or 8
        model, tokenizer = build_video_text_model(tiny_config(frames, args.seed))
        return model.eval(), tokenizer, f"{TINY_MODEL}-seed{args.seed}-f{frames}"
    demo = Path(demo_model_path())
    if not args.checkpoint and not demo.exists():
        raise SystemExit(f"error: no --checkpoint given and no demo model at {demo}; pass --checkpoint PATH "
                         f"(a saved model folder or an official .pth) or --checkpoint {TINY_MODEL}")
    path = Path(args.checkpoint or demo)
    if not path.exists():
        raise SystemExit(f"error: --checkpoint {args.checkpoint!r} does not exist")
    if path.is_file() and args.num_frames:  # the loader interpolates the temporal position embedding
        overrides = {**overrides, "vision_overrides": {"num_frames": args.num_frames,
                                                       **overrides.get("vision_overrides", {})}}
    model, tokenizer = load_video_text_model(str(path), **overrides)
    if args.num_frames and args.num_frames != model.num_frames:
        raise SystemExit(f"error: {path} was saved for {model.num_frames} frames; evaluate it with "
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
    if (args.num_frames is not None and args.num_frames < 1) or args.batch_size < 1 or args.k_test < 1:
        raise SystemExit("error: --num-frames, --batch-size and --k-test must be >= 1")
    try:
        device = init_distributed(args.device).device
    except RuntimeError as err:
        raise SystemExit(f"error: {err}") from None
    data_root = args.data_root or str(synthetic_root(args.bench, Path(args.cache_dir), args.synth_videos,
                                                   train_videos))
    bench = load_benchmark(args.bench, data_root, args.split)
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


def main(argv=None) -> dict:
    return evaluate_run(set_up(build_parser().parse_args(argv)))


if __name__ == "__main__":
    main(sys.argv[1:])
