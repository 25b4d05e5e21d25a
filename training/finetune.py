"""`python -m training.finetune --bench msrvtt [--data-root DIR] --checkpoint PATH`: fine-tune on the benchmark's
train split with the stage-2 objectives (VTC + VTM, MLM off), as the official `exp_zs` configs train (AdamW lr 1e-5,
weight decay 0.02, cosine with 0.2 epoch warmup, 2 epochs), evaluating the test split after every epoch, then
evaluate the tuned model as `python -m retrieval.eval` would (every evaluation flag applies).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from encoders.video_text import Tokenize, make_tokenize, save_pretrained
from retrieval import eval as eval_cli
from retrieval.cli import positive_int, user_errors
from retrieval.corpora import load_pairs
from retrieval.datasets import VideoTextTrainDataset
from retrieval.distributed import init_distributed, rank_world
from retrieval.evaluation import evaluate_benchmark
from training.config import TrainConfig
from training.loop import Trainer
from training.meta_loader import MetaLoader
from training.objective import UMTObjective
from training.sampler import ShardedBatchSampler


@dataclass
class FinetuneConfig:
    epochs: float = 2.0
    lr: float = 1e-5
    weight_decay: float = 0.02
    warmup_epochs: float = 0.2
    batch_size: int = 64
    max_steps: int = 0  # > 0 stops early
    num_workers: int = 0
    seed: int = 42
    output_dir: str = "runs/finetune"
    log_every: int = 10
    progress: bool = True


def build_parser() -> argparse.ArgumentParser:
    p = eval_cli.build_parser()
    p.prog, p.description = "python -m training.finetune", __doc__
    t = p.add_argument_group("fine-tuning")
    t.add_argument("--synth-train-videos", type=int, default=0,
                   help="videos of a generated synthetic train split (without --data-root; default 0: the "
                   "generator's, e.g. 5000 for msrvtt)")
    t.add_argument("--epochs", type=float, default=2.0, help="default: 2, as the official configs")
    t.add_argument("--lr", type=float, default=1e-5, help="AdamW learning rate (default: 1e-5)")
    t.add_argument("--weight-decay", type=float, default=0.02, help="default: 0.02")
    t.add_argument("--warmup-epochs", type=float, default=0.2, help="cosine schedule warmup (default: 0.2)")
    t.add_argument("--train-batch-size", type=positive_int, default=64,
                   help="training clips per rank per step (default: 64)")
    t.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (default: 0, no limit)")
    t.add_argument("--no-augment", action="store_true",
                   help="no crop/flip (for captions that name directions or sizes, e.g. the synthetic splits)")
    t.add_argument("--output-dir", default="runs/finetune",
                   help="fine-tuning checkpoints and the tuned model (default: runs/finetune)")
    return p


def collate_train(train_set, tokenize: Tokenize) -> Callable[[list], dict]:
    """The dataset's skip-robust collate, then tokenized captions; `idx` is the sample (video) id, so captions
    of the same video are VTC positives, as the official train datasets group them by video."""

    def collate(items: list) -> dict:
        batch = train_set.collate(items)
        input_ids, mask = tokenize(list(batch["caption"])) if batch.get("caption") else (None, None)
        return {"video": batch["video"], "input_ids": input_ids, "attention_mask": mask,
                "idx": batch.get("sample_id"), "skipped": batch["skipped"]}

    return collate


def stage2_forward(objective: nn.Module, batch: dict, stage: int) -> dict[str, torch.Tensor]:
    """VTC + VTM only: fine-tuning never runs MLM (the official retrieval model has no MLM head)."""
    if batch["input_ids"] is None:
        raise RuntimeError("a whole training batch was undecodable videos: "
                           + ", ".join(p for p, _ in batch["skipped"]))
    return objective(batch["video"], batch["input_ids"], batch["attention_mask"], batch["idx"], stage=2, mlm=False)


def finetune(model: nn.Module, train_set: Dataset, tokenize: Tokenize, cfg: FinetuneConfig,
             evaluate: Callable[[nn.Module, int], dict[str, float]] | None = None, device: str = "auto") -> nn.Module:
    """Train `model` in place on `train_set` (a VideoTextTrainDataset) and return it; `evaluate(model, epoch)` runs
    after every epoch."""
    if len(train_set) == 0:
        raise ValueError("the train split is empty (every video was skipped or the split has no samples)")
    dist_info = init_distributed(device)
    sampler = ShardedBatchSampler(len(train_set), cfg.batch_size, dist_info.rank, dist_info.world_size, cfg.seed)
    loader = DataLoader(train_set, batch_sampler=sampler, collate_fn=collate_train(train_set, tokenize),
                        num_workers=cfg.num_workers)
    train_cfg = TrainConfig(stage=2, output_dir=cfg.output_dir, seed=cfg.seed, log_every=cfg.log_every)
    train_cfg.data.batch_size = cfg.batch_size
    train_cfg.optim.lr, train_cfg.optim.weight_decay = cfg.lr, cfg.weight_decay
    train_cfg.optim.epochs, train_cfg.optim.warmup_epochs = cfg.epochs, cfg.warmup_epochs
    train_cfg.optim.max_steps = cfg.max_steps
    train_cfg.loss.mlm = train_cfg.loss.uta = 0.0
    evaluate_model = None if evaluate is None else (lambda objective, epoch: evaluate(objective.model, epoch))
    trainer = Trainer(UMTObjective(model, train_cfg.objective), MetaLoader({"video": loader}, seed=cfg.seed),
                      train_cfg, dist_info, evaluate=evaluate_model, forward=stage2_forward, progress=cfg.progress)
    trainer.fit()
    return model.eval()


def main(argv=None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    no_download = (f"omit --data-root and synthetic {args.bench} train and test splits are generated "
                   f"(python -m training.finetune --bench {args.bench})")
    with user_errors(parser, no_download=no_download):
        return run_finetune(args)


def run_finetune(args: argparse.Namespace) -> dict:
    """Fine-tune as the parsed command line says, then evaluate."""
    run = eval_cli.set_up(args, train_videos=args.synth_train_videos)
    pairs = load_pairs(args.bench, run.data_root, "train", require_media=True)
    train_set = VideoTextTrainDataset(pairs, num_frames=run.clips.num_frames, size=run.clips.image_size,
                                      augment=not args.no_augment)
    epoch_protocol = dataclasses.replace(run.protocol, split_across_ranks=False, progress=False)

    def evaluate_epoch(tuned, epoch: int) -> dict[str, float]:
        res = evaluate_benchmark(tuned, run.tokenizer, run.bench, epoch_protocol, run.clips, run.device)
        best = res["itm"] if "itm" in res else res["emb"]
        return {k: v for k, v in best.items() if k in ("t2v_r1", "v2t_r1", "r_mean", "temporal_acc")}

    ft = FinetuneConfig(epochs=args.epochs, lr=args.lr, weight_decay=args.weight_decay,
                        warmup_epochs=args.warmup_epochs, batch_size=args.train_batch_size, max_steps=args.max_steps,
                        num_workers=args.num_workers, seed=args.seed, output_dir=args.output_dir,
                        progress=not args.no_progress)
    tuned = finetune(run.model, train_set, make_tokenize(run.tokenizer, pairs.max_txt_len), ft, evaluate_epoch,
                     args.device)
    if rank_world()[0] == 0:
        save_pretrained(tuned, str(Path(args.output_dir) / "model"))
    # tuned weights: cached embeddings are neither reused nor written
    return eval_cli.evaluate_run(dataclasses.replace(run, model=tuned, model_key=""))


if __name__ == "__main__":
    main(sys.argv[1:])
