"""Fine-tuning on a benchmark's train split with the stage-2 objectives (VTC + VTM, MLM off), as the official
`exp_zs` configs would train: AdamW lr 1e-5, weight decay 0.02, cosine with 0.2 epoch warmup, 2 epochs.

The loop is `training.loop.Trainer`; it is imported lazily because `training` imports `retrieval`.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from retrieval.evaluator import Tokenize


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


def collate_train(train_set, tokenize: Tokenize) -> Callable[[list], dict]:
    """The dataset's skip-robust collate, then tokenized captions; `idx` is the sample (video) id, so captions
    of the same video are VTC positives, as the official train datasets group them by video."""

    def collate(items: list) -> dict:
        batch = train_set.collate(items)
        input_ids, mask = tokenize(list(batch["caption"])) if batch.get("caption") else (None, None)
        return {"video": batch["video"], "input_ids": input_ids, "attention_mask": mask,
                "idx": batch.get("sample_id"), "skipped": batch["skipped"]}

    return collate


def stage2_forward(model: nn.Module, batch: dict, stage: int) -> dict[str, torch.Tensor]:
    """VTC + VTM only: fine-tuning never runs MLM (the official retrieval model has no MLM head)."""
    if batch["input_ids"] is None:
        raise RuntimeError("a whole training batch was undecodable videos: " + ", ".join(p for p, _ in batch["skipped"]))
    return model(batch["video"], batch["input_ids"], batch["attention_mask"], batch["idx"], stage=2, mlm=False)


def finetune(
    model: nn.Module,
    train_set: Dataset,  # retrieval.datasets.VideoTextTrainDataset
    tokenize: Tokenize,
    cfg: FinetuneConfig,
    evaluate: Callable[[nn.Module, int], dict[str, float]] | None = None,
    device: str = "auto",
) -> nn.Module:
    """Train `model` in place on `train_set` and return it; `evaluate(model, epoch)` runs after every epoch."""
    from training.config import TrainConfig
    from training.distributed import ShardedBatchSampler, init_distributed
    from training.loop import Trainer
    from training.meta_loader import MetaLoader

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
    trainer = Trainer(model, MetaLoader({"video": loader}, seed=cfg.seed), train_cfg, dist_info,
                      evaluate=evaluate, forward=stage2_forward, progress=cfg.progress)
    trainer.fit()
    return model.eval()
