"""`python -m retrieval.eval --bench didemo [--data-root DIR] --checkpoint PATH`: zero-shot (or, with --train,
fine-tuned) video–text retrieval with the official protocol, printed as a table and written as JSON.

Without --data-root the synthetic split of the benchmark is generated once into the cache folder. Embeddings
are cached (keyed by checkpoint, benchmark, split and frame settings) so re-ranking settings can be changed
without re-encoding. Under torchrun the videos and ITM pairs are split across ranks.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Subset

from encoders.umt import (DEMO_MODEL_ENV, VideoTextConfig, build_video_text_model, demo_model_path,
                          load_video_text_model, make_tokenize)
from retrieval.corpora import Benchmark, get_corpus, list_corpora, load_benchmark, load_pairs
from retrieval.datasets import BadMediaWarning, SkipLog, VideoEvalDataset, VideoTextTrainDataset
from retrieval.evaluator import EvalConfig, Embeddings, encode_texts, encode_videos, evaluate, rank_world
from retrieval.frame_average import FrameAveraged

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
    p.add_argument("--synth-train-videos", type=int, default=0,
                   help="videos of a generated synthetic train split for --train (default: the generator's)")
    p.add_argument("--output", default=None, help="JSON results file (default: <cache>/results/<bench>-<split>.json)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--seed", type=int, default=0, help="seed of the random tiny model and of fine-tuning")
    t = p.add_argument_group("fine-tuning (--train)")
    t.add_argument("--train", action="store_true", help="fine-tune on the benchmark's train split first")
    t.add_argument("--epochs", type=float, default=2.0)
    t.add_argument("--lr", type=float, default=1e-5)
    t.add_argument("--weight-decay", type=float, default=0.02)
    t.add_argument("--warmup-epochs", type=float, default=0.2)
    t.add_argument("--train-batch-size", type=int, default=64)
    t.add_argument("--max-steps", type=int, default=0)
    t.add_argument("--no-augment", action="store_true",
                   help="no crop/flip (for captions that name directions or sizes, e.g. the synthetic splits)")
    t.add_argument("--output-dir", default="runs/finetune", help="fine-tuning checkpoints and the tuned model")
    return p


# ------------------------------------------------------------------------------------------------ model

def tiny_config(num_frames: int, seed: int):
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
    built_for = model.vision_encoder.cfg.num_frames
    if args.num_frames and args.num_frames != built_for:
        raise SystemExit(f"error: {path} was saved for {built_for} frames; evaluate it with --num-frames {built_for}")
    return model, tokenizer, _weights_key(path, overrides)


def _weights_key(path: Path, overrides: dict) -> str:
    files = sorted(p for p in ([path] if path.is_file() else path.rglob("*")) if p.is_file())
    stamp = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    return hashlib.sha256(json.dumps([stamp, overrides], sort_keys=True).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------------ data

def synthetic_root(bench: str, cache_dir: Path, videos: int | None, train_videos: int | None) -> Path:
    """Generate (once) a synthetic data root holding only `bench`'s evaluation split, plus its train split when
    `train_videos` is given (0 = the generator's default size); every other corpus gets 0 clips."""
    from retrieval.synth.writer import GENERATOR_VERSION, SynthConfig, generate

    spec, defaults = get_corpus(bench), SynthConfig(out="")
    corpus_counts = {c if c in vars(defaults) else f"{c}_{split}"
                     for c in list_corpora() for split in get_corpus(c).splits}
    counts = {name: 0 for name in corpus_counts if name in vars(defaults)}
    eval_field = f"{bench}_{spec.eval_split}"
    counts[eval_field] = videos or getattr(defaults, eval_field)
    if train_videos is not None:
        counts[f"{bench}_train"] = train_videos or getattr(defaults, f"{bench}_train")
    settings = {k: v for k, v in dataclasses.asdict(SynthConfig(out="", **counts)).items() if k != "out"}
    settings["generator_version"] = GENERATOR_VERSION
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    root = cache_dir / "synth" / f"{bench}-{key}"
    if not (root / "manifest.json").is_file():
        if rank_world()[0] == 0:
            generate(SynthConfig(out=str(root), **counts))
        if rank_world()[1] > 1:
            dist.barrier()
    return root


def video_batches(bench: Benchmark, args, image_size: int, skips: SkipLog, split_ranks: bool = True):
    """This rank's share of the benchmark videos as (video, index) batches with the official test sampling
    (interval middles); undecodable videos are dropped by the dataset and tallied in `skips`."""
    dataset = VideoEvalDataset(bench, num_frames=args.num_frames, size=image_size)
    rank, world = rank_world(split_ranks)
    loader = DataLoader(Subset(dataset, range(rank, len(dataset), world)), batch_size=args.batch_size,
                        num_workers=args.num_workers, collate_fn=dataset.collate)
    for batch in loader:
        skips.update(batch)
        if len(batch["index"]):
            yield batch["video"], batch["index"]


def compute_embeddings(model, tokenizer, bench: Benchmark, args, cfg: EvalConfig, device, image_size: int):
    """All embeddings of the benchmark, and the (path -> reason) of videos this rank could not decode."""
    tokenize = make_tokenize(tokenizer, bench.max_txt_len)
    text_tokens, text_mask, text_feat = encode_texts(model, tokenize, bench.texts, cfg, device)
    skips = SkipLog(f"{bench.name}/{bench.split}")
    batches = video_batches(bench, args, image_size, skips, cfg.split_across_ranks)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BadMediaWarning)  # reported once, in the summary
        vision_tokens, vision_feat, ok = encode_videos(model, batches, len(bench.videos), device, cfg)
    reasons = dict(skips.items)
    if rank_world(cfg.split_across_ranks)[1] > 1:
        gathered = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, reasons)
        reasons = {path: why for part in gathered for path, why in part.items()}
    return Embeddings(text_tokens, text_mask, text_feat, vision_tokens, vision_feat, ok), reasons


def skipped_videos(bench: Benchmark, emb: Embeddings, reasons: dict[str, str]) -> dict[str, str]:
    """Every video left out, with the decoder's reason ("undecodable" when read from cached embeddings)."""
    return {p: reasons.get(p, "undecodable") for v, p in enumerate(bench.videos) if not bool(emb.video_ok[v])}


# ------------------------------------------------------------------------------------------------ cache

def embeddings_key(model_key: str, bench: Benchmark, data_root: str, args, image_size: int) -> str:
    parts = [model_key, bench.name, bench.split, str(Path(data_root).resolve()), len(bench.videos), len(bench.texts),
             bench.max_txt_len, args.num_frames, "middle", image_size] + (["frame_average"] if args.frame_average else [])
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def load_cached(path: Path) -> Embeddings | None:
    from safetensors.torch import load_file

    if not path.is_file():
        return None
    return Embeddings(**load_file(str(path)))


def save_cached(path: Path, emb: Embeddings) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(emb.state_dict(), str(tmp))
    tmp.replace(path)


# ------------------------------------------------------------------------------------------------ output

COLUMNS = [("R@1", "r1"), ("R@5", "r5"), ("R@10", "r10"), ("MdR", "medr"), ("MnR", "meanr")]


def format_table(results: dict, title: str) -> str:
    """Rows per score set; text→video then video→text columns, R_mean, and temporal accuracy (overall and per
    hard-negative kind) when present."""
    header = ["scores"] + [f"t2v {c}" for c, _ in COLUMNS] + [f"v2t {c}" for c, _ in COLUMNS] + ["R_mean"]
    sets = [k for k in ("emb", "emb_dsl", "itm") if k in results]
    temporal = sorted({k for s in sets for k in results[s] if k.startswith("temporal_acc")}, key=len)
    header += ["temporal" if k == "temporal_acc" else k.removeprefix("temporal_acc_") for k in temporal]
    rows = []
    for name in sets:
        m = results[name]
        row = [name] + [f"{m[f't2v_{k}']:.1f}" for _, k in COLUMNS] + [f"{m[f'v2t_{k}']:.1f}" for _, k in COLUMNS]
        row.append(f"{m['r_mean']:.2f}")
        row += [f"{m[k]:.1f}" if k in m else "-" for k in temporal]
        rows.append(row)
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    line = lambda r: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([title, line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


# ------------------------------------------------------------------------------------------------ main

def init_distributed(device: str) -> torch.device:
    """Join torchrun's process group when WORLD_SIZE > 1; returns this rank's device."""
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but CUDA is not available")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return dev


def evaluate_benchmark(args, cfg: EvalConfig, model, tokenizer, model_key: str, device, data_root: str,
                       bench: Benchmark) -> dict:
    """Encode (or load cached embeddings), score with the protocol, and attach skipped videos and run facts."""
    image_size = args.image_size or model.vision_encoder.patch_embed.img_size
    key = embeddings_key(model_key, bench, data_root, args, image_size)
    cache_file = Path(args.cache_dir) / "embeddings" / f"{bench.name}-{bench.split}-{key}.safetensors"
    use_cache = bool(model_key) and not args.no_cache
    emb, reasons = (load_cached(cache_file) if use_cache else None), {}
    cached = emb is not None
    started = time.perf_counter()
    if emb is None:
        emb, reasons = compute_embeddings(model, tokenizer, bench, args, cfg, device, image_size)
        if use_cache and rank_world(cfg.split_across_ranks)[0] == 0:
            save_cached(cache_file, emb)
    encoded = time.perf_counter()
    results = evaluate(model, emb, bench.txt2vid, bench.vid2txt, cfg, groups=list(bench.groups.values()),
                       group_kinds=[bench.temporal.get(name, "") for name in bench.groups],
                       device=device)
    results["skipped_videos"] = skipped_videos(bench, emb, reasons)
    results["meta"] = {"bench": bench.name, "split": bench.split, "data_root": data_root,
                       "checkpoint": args.checkpoint, "num_frames": args.num_frames, "sample": "middle",
                       "frame_average": args.frame_average,
                       "image_size": image_size, "k_test": cfg.k_test, "embeddings_cached": cached,
                       "embeddings_file": str(cache_file) if use_cache else None,
                       "encode_seconds": round(encoded - started, 2),
                       "score_seconds": round(time.perf_counter() - encoded, 2)}
    return results


def finetune_on(args, model, tokenizer, data_root: str, bench: Benchmark, cfg: EvalConfig, device):
    """Fine-tune on the benchmark's train split (stage-2 losses), evaluating the test split after each epoch."""
    from retrieval.finetune import FinetuneConfig, finetune

    image_size = args.image_size or model.vision_encoder.patch_embed.img_size
    pairs = load_pairs(args.bench, data_root, "train")
    train_set = VideoTextTrainDataset(pairs, num_frames=args.num_frames, size=image_size, augment=not args.no_augment)
    epoch_cfg = dataclasses.replace(cfg, split_across_ranks=False, progress=False)

    def evaluate_epoch(tuned, epoch: int) -> dict[str, float]:
        res = evaluate_benchmark(args, epoch_cfg, tuned, tokenizer, "", device, data_root, bench)
        best = res["itm"] if "itm" in res else res["emb"]
        return {k: v for k, v in best.items() if k in ("t2v_r1", "v2t_r1", "r_mean", "temporal_acc")}

    ft = FinetuneConfig(epochs=args.epochs, lr=args.lr, weight_decay=args.weight_decay,
                        warmup_epochs=args.warmup_epochs, batch_size=args.train_batch_size, max_steps=args.max_steps,
                        num_workers=args.num_workers, seed=args.seed, output_dir=args.output_dir,
                        progress=not args.no_progress)
    model = finetune(model, train_set, make_tokenize(tokenizer, pairs.max_txt_len), ft, evaluate_epoch, args.device)
    if rank_world()[0] == 0:
        model.save_pretrained(str(Path(args.output_dir) / "model"))
    return model


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    if (args.num_frames is not None and args.num_frames < 1) or args.batch_size < 1 or args.k_test < 1:
        raise SystemExit("error: --num-frames, --batch-size and --k-test must be >= 1")
    device = init_distributed(args.device)
    data_root = args.data_root or str(synthetic_root(args.bench, Path(args.cache_dir), args.synth_videos,
                                                   args.synth_train_videos if args.train else None))
    bench = load_benchmark(args.bench, data_root, args.split)
    model, tokenizer, model_key = load_model(args)
    args.num_frames = model.vision_encoder.cfg.num_frames
    model = model.to(device)
    cfg = EvalConfig(k_test=args.k_test, itm_batch_size=args.itm_batch_size, rerank=not args.no_rerank,
                     dual_softmax=args.dual_softmax, progress=not args.no_progress)
    if args.train:
        model = finetune_on(args, model, tokenizer, data_root, bench, cfg, device)
        model_key = ""  # tuned weights: cached embeddings are neither reused nor written
    if args.frame_average:
        model = FrameAveraged(model)
    results = evaluate_benchmark(args, cfg, model, tokenizer, model_key, device, data_root, bench)
    if rank_world()[0] == 0:
        counts = results["counts"]
        title = (f"{bench.name} ({bench.split}): {counts['videos_evaluated']}/{counts['videos']} videos, "
                 f"{counts['texts_evaluated']}/{counts['texts']} texts, k_test={cfg.k_test}")
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


if __name__ == "__main__":
    main(sys.argv[1:])
