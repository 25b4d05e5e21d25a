"""`python -m training.pretrain --data webvid --data-root DIR --output runs/x [--config c.yaml] [--stage 1|2]`

UMT-style video–text pretraining of VideoMamba. One process, or many under torchrun
(`torchrun --nproc_per_node 8 [--nnodes N ...] -m training.pretrain ...`): DDP over NCCL on GPUs, gloo on CPU.
Data: webvid (videos), cc3m (images), 5m (webvid + cc3m, batches interleaved), synth (the webvid-style train
split of a synthetic corpus; generated into --data-root when missing: no download).
WebVid and CC3M are read as people have them, found under --data-root: the official JSON annotation
(anno_pretrain/webvid_train.json + WebVid/), WebVid's CSV as released beside its downloaded videos, or WebDataset
tar shards as video2dataset / img2dataset write them (streamed, split across ranks and workers; they have no
length, so give --max-steps). Or name them: --annotation FILE [--media-dir DIR], --shards SPEC.
Every flag can also be given as `--set section.key=value`; a YAML config holds the same keys
(training/configs/*.yaml). Defaults below are the config's, for stage 2 (stage 1's schedule: see --stage).
"""
from __future__ import annotations

import argparse
import math
import sys
import warnings
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from encoders.video_text import (VideoTextConfig, build_video_text_model, load_video_text_model, make_tokenize,
                                 save_pretrained)
from retrieval.cli import UsageError, positive_int, user_errors
from retrieval.corpora import Pairs, get_corpus, load_benchmark, load_pairs
from retrieval.datasets import BadMediaWarning, SkipLog, VideoTextTrainDataset
from retrieval.distributed import DistInfo, all_gather_object, barrier, cleanup, init_distributed
from retrieval.evaluation import ClipLoading, evaluate_benchmark
from retrieval.evaluator import EvalConfig
from retrieval.shards import ShardStream
from retrieval.sources import PretrainSource, find_source
from retrieval.synth.writer import SynthConfig, generate
from training.config import (DATA_CHOICES, ConfigError, DataConfig, OptimConfig, TrainConfig, load_config,
                             parse_override)
from training.data import ReplaceBadItems, pretrain_collate
from training.loop import Trainer, default_forward, unwrap
from training.meta_loader import MetaLoader
from training.objective import UMTObjective
from training.sampler import ShardedBatchSampler
from training.seeded import SeededDataset

Found = tuple[PretrainSource, Pairs | None]  # a corpus's data, and its pairs when it is an annotation
# data choice -> [(loader name, corpus name)]: videos and images go to separate, interleaved loaders
SOURCES = {"webvid": [("video", "webvid")], "cc3m": [("image", "cc3m")],
           "5m": [("video", "webvid"), ("image", "cc3m")], "synth": [("video", "webvid")]}


def build_parser() -> argparse.ArgumentParser:
    data, optim = DataConfig(), OptimConfig()
    p = argparse.ArgumentParser(prog="python -m training.pretrain", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None, help="YAML file with TrainConfig keys (default: none, the built-in "
                   "defaults; examples in training/configs/)")
    p.add_argument("--data", choices=DATA_CHOICES, default=None, help=f"the corpus (default: {data.name}); synth "
                   "generates a small synthetic one, no download")
    p.add_argument("--data-root", default=None, help=f"folder holding the corpus, in any form retrieval/sources.py "
                   f"reads (default: {data.root})")
    p.add_argument("--annotation", default=None, help="an annotation file to train on instead: the official JSON or "
                   "WebVid's CSV (default: found under --data-root)")
    p.add_argument("--media-dir", default=None, help="the folder of that annotation's videos or images (default: "
                   "<data-root>/WebVid (CC3M), <data-root>/videos, or the data root)")
    p.add_argument("--shards", default=None, help="WebDataset shards to stream instead: shards/{00000..00009}.tar, "
                   "a folder of .tar files, or a .txt list of paths or http(s)/file URLs (default: *.tar found under "
                   "--data-root)")
    p.add_argument("--output", default=None, help="output folder: checkpoints/, tensorboard/, train.log, model/ "
                   f"(default: {TrainConfig.output_dir})")
    p.add_argument("--stage", type=int, choices=(1, 2), default=None,
                   help="1: masked + CLIP teacher (UTA), 10 epochs at 4e-4; 2: unmasked, no teacher, 1 epoch at 8e-5 "
                   "(default: the config's, else 2)")
    p.add_argument("--init-from", default=None, help="saved model folder to start from (stage 2: stage 1's model/; "
                   "default: a fresh model)")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help=f"video clips per rank per step (default: {data.batch_size})")
    p.add_argument("--max-steps", type=positive_int, default=None, help="stop after this many steps; required for "
                   f"streamed shards, whose length is unknown (default: {optim.max_steps}: run optim.epochs epochs)")
    p.add_argument("--workers", type=int, default=None, help=f"DataLoader workers per rank (default: "
                   f"{data.num_workers})")
    p.add_argument("--grad-checkpointing", action="store_true", help="recompute VideoMamba blocks in backward")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in OUTPUT")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any config key, e.g. --set optim.lr=1e-4 (repeatable)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="default: auto (cuda when available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    flags = {"data": {}, "optim": {}, "model": {}}
    if args.data:
        flags["data"]["name"] = args.data
    for key in ("data_root", "annotation", "media_dir", "shards"):
        if getattr(args, key):
            flags["data"][key.removeprefix("data_")] = getattr(args, key)
    if args.batch_size:
        flags["data"]["batch_size"] = args.batch_size
    if args.workers is not None:
        flags["data"]["num_workers"] = args.workers
    if args.max_steps is not None:
        flags["optim"]["max_steps"] = args.max_steps
    if args.init_from:
        flags["model"]["init_from"] = args.init_from
    if args.output:
        flags["output_dir"] = args.output
    if args.grad_checkpointing:
        flags["grad_checkpointing"] = True
    if args.resume:
        flags["resume"] = True
    overrides = [parse_override(s) for s in args.set] + [{k: v for k, v in flags.items() if v != {}}]
    return load_config(args.config, overrides=overrides, stage=args.stage)


# VideoTextConfig fields that say how to train, not what the weights are: with `init_from` they come from the
# training config, everything else from the saved model.
TRAINING_FIELDS = ("teacher", "teacher_path", "teacher_model", "freeze_text", "trainable_text_layers", "text_dropout",
                   "vision_overrides")


def build_model(cfg: TrainConfig):
    """(model, tokenizer): a fresh VideoTextModel, or `init_from`'s weights (given a fresh MLM head when the config
    asks for MLM and the saved model has none) trained as the config's TRAINING_FIELDS say; the vision encoder's
    frames and resolution follow the data config."""
    fields = dict(cfg.model.video_text)
    vision = {"num_frames": cfg.data.num_frames, "img_size": cfg.data.image_size, **fields.get("vision_overrides", {})}
    if cfg.grad_checkpointing:
        vision.update(use_checkpoint=True, checkpoint_num=10_000)
    fields["vision_overrides"] = vision
    fields.setdefault("max_txt_len", cfg.data.max_text_len)
    if cfg.model.init_from:
        keep = {k: fields[k] for k in TRAINING_FIELDS if k in fields}
        model, tokenizer = load_video_text_model(cfg.model.init_from, **keep)
        if fields.get("mlm") and cfg.loss.mlm > 0:
            model.add_mlm_head()
    else:
        model, tokenizer = build_video_text_model(VideoTextConfig.from_dict(fields))
    if cfg.stage == 1 and model.clip_teacher is None:
        raise ConfigError("stage 1 needs a teacher: set model.video_text.teacher (clip_b16, clip_test_tiny, videomamba)")
    return model, tokenizer


def ensure_synth_corpus(root: Path, dist_info: DistInfo, progress: bool = True) -> None:
    """Write the default synthetic corpus into `root` once (rank 0) when it has no webvid annotation."""
    if not (root / "anno_pretrain" / "webvid_train.json").is_file() and dist_info.is_main:
        print(f"generating the synthetic corpus into {root} (python -m retrieval.synth --out {root})", file=sys.stderr)
        generate(SynthConfig(out=str(root)), progress=progress)
    barrier()


def find_sources(cfg: TrainConfig, dist_info: DistInfo, progress: bool = True) -> list[Found]:
    """The data of every corpus the run trains on, with the pairs of an annotation (None for shards), found (or
    generated, for synth) before any model is built, so that missing data fails in seconds."""
    if cfg.data.name == "synth":
        ensure_synth_corpus(Path(cfg.data.root), dist_info, progress)
    sources = [find_source(corpus, cfg.data.root, cfg.data.split, cfg.data.annotation, cfg.data.media_dir,
                           cfg.data.shards, alone=len(SOURCES[cfg.data.name]) == 1)
               for _, corpus in SOURCES[cfg.data.name]]
    streamed = [s for s in sources if s.shards]
    if streamed and cfg.optim.max_steps <= 0:
        raise ConfigError(f"{streamed[0].describe()}: shards are streamed and have no known length; give --max-steps "
                          "N (optim.epochs then divides those steps into epochs, for warmup and evaluation)")
    for source in streamed:
        if len(source.shards) < dist_info.world_size:
            raise ConfigError(f"{source.describe()}: {len(source.shards)} shard(s) for {dist_info.world_size} "
                              "ranks; every rank needs at least one")
    return [(s, None if s.shards else load_pairs(s.corpus, split=cfg.data.split, anno=s.annotation,
                                                 media_root=s.media_root, require_media=True)) for s in sources]


def build_loader(cfg: TrainConfig, dist_info: DistInfo, tokenizer, sources: list[Found]) -> MetaLoader:
    collate = pretrain_collate(make_tokenize(tokenizer, cfg.data.max_text_len))
    loaders = {}
    for (name, _), (source, pairs) in zip(SOURCES[cfg.data.name], sources):
        batch = cfg.data.image_batch_size if name == "image" else cfg.data.batch_size
        common = dict(collate_fn=collate, num_workers=cfg.data.num_workers, pin_memory=dist_info.device.type == "cuda",
                      persistent_workers=False)
        if source.shards:
            stream = ShardStream(list(source.shards), get_corpus(source.corpus).media, num_frames=cfg.data.num_frames, size=cfg.data.image_size,
                                 augment=cfg.data.augment, seed=cfg.seed, rank=dist_info.rank,
                                 world_size=dist_info.world_size)
            loaders[name] = DataLoader(stream, batch_size=batch, **common)
            continue
        dataset = SeededDataset(ReplaceBadItems(VideoTextTrainDataset(
            pairs, num_frames=cfg.data.num_frames, size=cfg.data.image_size, augment=cfg.data.augment)), seed=cfg.seed)
        groups = [pair.group for pair in pairs.items] if cfg.data.group_batches else None
        if len(dataset) < batch * dist_info.world_size:
            raise ConfigError(f"{source.describe()}: {len(dataset)} pairs, fewer than one global batch ({batch} x "
                              f"{dist_info.world_size} ranks); lower --batch-size")
        sampler = ShardedBatchSampler(len(dataset), batch, dist_info.rank, dist_info.world_size, seed=cfg.seed,
                                      groups=groups)
        loaders[name] = DataLoader(dataset, batch_sampler=sampler, **common)
    epochs = cfg.optim.epochs if cfg.optim.epochs > 0 else 1.0
    stream_steps = math.ceil(cfg.optim.max_steps / epochs / len(loaders))
    return MetaLoader(loaders, seed=cfg.seed, stream_steps=stream_steps)


def make_evaluate(cfg: TrainConfig, tokenizer, device: torch.device):
    """Retrieval on the held-out split `data.eval_split` ("msrvtt" or "msrvtt:test") of the data root after every
    epoch (ITC and ITM re-ranked); None when no split is configured."""
    if not cfg.data.eval_split:
        return None
    bench_name, _, split = cfg.data.eval_split.partition(":")
    bench = load_benchmark(bench_name, cfg.data.root, split or None)
    protocol = EvalConfig(k_test=min(128, len(bench.videos)), progress=False, split_across_ranks=False)
    clips = ClipLoading(num_frames=cfg.data.num_frames, image_size=cfg.data.image_size)

    def evaluate(objective: UMTObjective, epoch: int) -> dict[str, float]:
        model = objective.model
        was_training = model.training
        model.eval()
        with torch.no_grad():
            results = evaluate_benchmark(model, tokenizer, bench, protocol, clips, device)
        model.train(was_training)
        return {f"{scores}/{key}": float(value) for scores in ("emb", "itm") if scores in results
                for key, value in results[scores].items()}

    return evaluate


NO_DOWNLOAD = ("python -m training.pretrain --data synth --data-root data/synth (a synthetic WebVid-style corpus is "
               "generated first)")


def main(argv=None) -> TrainConfig:
    parser = build_parser()
    args = parser.parse_args(argv)
    with user_errors(parser, ConfigError, no_download=NO_DOWNLOAD):
        return pretrain(args)


def pretrain(args: argparse.Namespace) -> TrainConfig:
    """Train as the parsed command line says; the model is written to <output>/model."""
    cfg = config_from_args(args)
    if cfg.model.init_from and not Path(cfg.model.init_from).exists():
        raise ConfigError(f"model.init_from {cfg.model.init_from!r} does not exist (a saved model folder, e.g. an "
                          "earlier run's <output>/model)")
    try:
        dist_info = init_distributed(args.device)
    except RuntimeError as err:
        raise UsageError(str(err)) from None
    try:
        sources = find_sources(cfg, dist_info, progress=not args.no_progress)
        if dist_info.is_main:
            print("training on " + "; ".join(s.describe() for s, _ in sources), file=sys.stderr)
        torch.manual_seed(cfg.seed)  # identical initialisation on every rank (DDP also broadcasts rank 0's)
        model, tokenizer = build_model(cfg)
        loader = build_loader(cfg, dist_info, tokenizer, sources)
        skips = SkipLog(f"{cfg.data.name}/{cfg.data.split}")

        def forward(m, batch, stage):
            skips.update(batch)
            return default_forward(m, batch, stage)

        trainer = Trainer(UMTObjective(model, cfg.objective), loader, cfg, dist_info,
                          evaluate=make_evaluate(cfg, tokenizer, dist_info.device), forward=forward,
                          progress=not args.no_progress)
        if cfg.resume and trainer.resume() and dist_info.is_main:
            print(f"resumed at step {trainer.state.step}", file=sys.stderr)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", BadMediaWarning)  # reported once, in the summary below
            trainer.fit()
        for rank_items in all_gather_object(skips.items):
            for path, reason in rank_items.items():
                skips.items.setdefault(path, reason)
        if dist_info.is_main:
            summary = skips.summary(file=sys.stderr)
            (Path(cfg.output_dir) / "skipped.txt").write_text(summary + "\n")
            save_pretrained(unwrap(trainer.model).model, str(Path(cfg.output_dir) / "model"),
                            only_changed=cfg.model.export_only_changed, half=cfg.model.export_half)
            print(f"done: {trainer.state.step} steps; model in {Path(cfg.output_dir) / 'model'}", file=sys.stderr)
        barrier()
        return cfg
    finally:
        cleanup()


if __name__ == "__main__":
    main()
