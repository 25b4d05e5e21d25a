"""The pretraining / fine-tuning loop: a model that returns a dict of losses, a MetaLoader, AdamW +
cosine, optional DDP, checkpoints every N steps with exact resume, tqdm / log file / TensorBoard on
rank 0, and an `evaluate` callback after every epoch (this module never imports retrieval)."""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from training.checkpointing import Checkpointer, rng_state, set_rng_state
from training.config import ConfigError, TrainConfig, from_dict, to_dict
from retrieval.distributed import DistInfo, all_gather_object, all_reduce_mean, barrier
from training.meta_loader import MetaLoader
from training.optim import CosineWarmup, build_optimizer

LOSS_NAMES = ("vtc", "vtm", "mlm", "uta")
Batch = dict[str, Any]
Evaluate = Callable[[nn.Module, int], dict[str, float]]


@dataclass
class TrainState:
    step: int = 0  # optimizer steps done
    epoch: int = 0  # current epoch
    pos: int = 0  # steps already done inside `epoch`
    history: list[dict[str, float]] = field(default_factory=list)  # this rank's per-step losses


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


def loss_name(key: str) -> str:
    name = key[len("loss_"):] if key.startswith("loss_") else key
    if name not in LOSS_NAMES:
        raise KeyError(f"model returned unknown loss {key!r}; expected one of {LOSS_NAMES}")
    return name


def weighted_total(losses: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """Sum of weight * loss. Zero-weight losses stay in the graph (times 0), so DDP sees every parameter."""
    return sum(weights[loss_name(k)] * v for k, v in losses.items())


def move_to(batch: Batch, device: torch.device) -> Batch:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def default_forward(model: nn.Module, batch: Batch, stage: int) -> dict[str, torch.Tensor]:
    return model(batch["video"], batch["input_ids"], batch["attention_mask"], batch["idx"], stage=stage)


def schedule_lengths(cfg: TrainConfig, steps_per_epoch: int) -> tuple[int, int]:
    """(total steps, warmup steps): `max_steps` wins when set, else `epochs` worth of steps."""
    total = cfg.optim.max_steps if cfg.optim.max_steps > 0 else math.ceil(cfg.optim.epochs * steps_per_epoch)
    warmup = round(cfg.optim.warmup_epochs * steps_per_epoch)
    return max(1, total), warmup


def _file_logger(path: Path) -> logging.Logger:
    logger = logging.getLogger(f"training.{path}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if not logger.handlers:
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        logger.addHandler(handler)
    return logger


class Trainer:
    """Owns model, optimizer, schedule and state; `fit()` runs to the end and writes the final checkpoint."""

    def __init__(self, model: nn.Module, loader: MetaLoader, cfg: TrainConfig, dist_info: DistInfo = DistInfo(),
                 evaluate: Evaluate | None = None, forward: Callable[[nn.Module, Batch, int], dict] = default_forward,
                 checkpointer: Checkpointer | None = None, progress: bool = True):
        self.cfg, self.dist, self.loader = cfg, dist_info, loader
        self.evaluate, self.forward, self.progress = evaluate, forward, progress
        self.out = Path(cfg.output_dir)
        self.checkpointer = checkpointer or Checkpointer(self.out / "checkpoints", keep_last=cfg.keep_last)
        model = model.to(dist_info.device)
        if dist_info.distributed:
            device_ids = [dist_info.device.index] if dist_info.device.type == "cuda" else None
            model = DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=True)
        self.model = model
        self.optimizer = build_optimizer(unwrap(model), cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.betas)
        self.steps_per_epoch = len(loader)
        total, warmup = schedule_lengths(cfg, self.steps_per_epoch)
        self.scheduler = CosineWarmup(self.optimizer, total, warmup, cfg.optim.min_lr_ratio)
        self.total_steps = total
        self.weights = {name: float(getattr(cfg.loss, name)) for name in LOSS_NAMES}
        self.state = TrainState()
        self.writer = None
        self.log = None
        if dist_info.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            self.log = _file_logger(self.out / "train.log")

    # ---- checkpoints -------------------------------------------------------------------------------
    def checkpoint_state(self) -> dict[str, Any]:
        return {
            "model": unwrap(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.state.step, "epoch": self.state.epoch, "pos": self.state.pos,
            "rng": all_gather_object(rng_state()),  # one entry per rank
            "config": to_dict(self.cfg),
        }

    def save(self) -> Path | None:
        state = self.checkpoint_state()  # every rank joins the RNG gather
        path = self.checkpointer.save(state, self.state.step) if self.dist.is_main else None
        barrier()
        return path

    def resume(self, path: str | Path | None = None) -> bool:
        """Load the newest checkpoint (or `path`); returns False when there is none to resume from."""
        path = path or self.checkpointer.latest()
        if path is None:
            return False
        ckpt = Checkpointer.load(path, map_location=self.dist.device)
        saved = from_dict(ckpt["config"])
        if saved.data.batch_size != self.cfg.data.batch_size or saved.seed != self.cfg.seed:
            raise ConfigError(f"checkpoint {str(path)!r} was written with batch_size={saved.data.batch_size}, "
                             f"seed={saved.seed}; this run has {self.cfg.data.batch_size}, {self.cfg.seed}: "
                             "the data order would not continue")
        if len(ckpt["rng"]) != self.dist.world_size:
            raise ConfigError(f"checkpoint {str(path)!r} was written by {len(ckpt['rng'])} ranks; this run has "
                             f"{self.dist.world_size}, so per-rank data shards and RNG cannot continue exactly")
        unwrap(self.model).load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        total, warmup = schedule_lengths(self.cfg, self.steps_per_epoch)
        if (total, warmup) != (self.scheduler.total_steps, self.scheduler.warmup_steps):
            if self.log:
                self.log.info("schedule changed on resume: %d total / %d warmup steps (checkpoint: %d / %d)", total,
                              warmup, self.scheduler.total_steps, self.scheduler.warmup_steps)
            self.scheduler.reschedule(total, warmup)
        self.state = TrainState(step=ckpt["step"], epoch=ckpt["epoch"], pos=ckpt["pos"])
        set_rng_state(ckpt["rng"][self.dist.rank])
        if self.log:
            self.log.info("resumed from %s at step %d (epoch %d, position %d)", path, self.state.step,
                          self.state.epoch, self.state.pos)
        return True

    # ---- one step ----------------------------------------------------------------------------------
    def train_step(self, batch: Batch) -> dict[str, float]:
        self.model.train()
        batch = move_to(batch, self.dist.device)
        use_bf16 = self.cfg.bf16 and self.dist.device.type == "cuda"
        with torch.autocast(device_type=self.dist.device.type, dtype=torch.bfloat16, enabled=use_bf16):
            losses = self.forward(self.model, batch, self.cfg.stage)
        total = weighted_total(losses, self.weights)
        if not torch.isfinite(total):
            raise FloatingPointError(f"loss is {total.item()} at step {self.state.step}: "
                                     + ", ".join(f"{k}={v.item():.4g}" for k, v in losses.items()))
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        grad_norm = None
        if self.cfg.optim.max_grad_norm > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        values = {loss_name(k): float(v.detach()) for k, v in losses.items()}
        values["loss"] = float(total.detach())
        if grad_norm is not None:
            values["grad_norm"] = float(grad_norm)
        return values

    # ---- the run -----------------------------------------------------------------------------------
    def fit(self, stop_after: int | None = None) -> TrainState:
        """Train until the schedule ends, or until `stop_after` total steps (then checkpoint and return,
        as a pre-empted job would; `resume()` continues on the same schedule)."""
        cfg, state = self.cfg, self.state
        end = self.total_steps if stop_after is None else min(stop_after, self.total_steps)
        if self.writer is None and self.dist.is_main:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(self.out / "tensorboard"))
        bar = tqdm(total=self.total_steps, initial=state.step, disable=not (self.progress and self.dist.is_main),
                   dynamic_ncols=True, desc=f"stage {cfg.stage}")
        clips_per_step = {name: self.loader.batch_size(name) * self.dist.world_size for name in self.loader.names}
        try:
            while state.step < end:
                for name, batch in self.loader.epoch(state.epoch, start=state.pos):
                    started = time.perf_counter()
                    values = self.train_step(batch)
                    elapsed = time.perf_counter() - started
                    state.step += 1
                    state.pos += 1
                    state.history.append(values)
                    self._report(name, values, clips_per_step[name] / elapsed, bar)
                    if state.step % cfg.save_every == 0 and state.step < end:
                        self._end_epoch_if_done()
                        self.save()
                    if state.step >= end:
                        break
                self._end_epoch_if_done()
            self.save()
        finally:
            bar.close()
            if self.writer is not None:
                self.writer.flush()
        return state

    def _end_epoch_if_done(self) -> None:
        if self.state.pos >= self.steps_per_epoch:
            finished = self.state.epoch
            self.state.epoch += 1
            self.state.pos = 0
            self._evaluate(finished)

    def _evaluate(self, epoch: int) -> None:
        if self.evaluate is None:
            return
        metrics = self.evaluate(unwrap(self.model), epoch) if self.dist.is_main else {}
        barrier()
        if self.dist.is_main and metrics:
            for key, value in metrics.items():
                self.writer.add_scalar(f"eval/{key}", value, self.state.step)
            self.log.info("epoch %d eval %s", epoch, " ".join(f"{k}={v:.4g}" for k, v in metrics.items()))

    def _report(self, loader_name: str, values: dict[str, float], clips_per_s: float, bar: tqdm) -> None:
        step = self.state.step
        if step % self.cfg.log_every == 0 or step == self.total_steps:
            mean = {k: float(all_reduce_mean(torch.tensor(v))) for k, v in values.items()}
            if self.dist.is_main:
                lr = self.scheduler.get_last_lr()[0]
                for key, value in mean.items():
                    self.writer.add_scalar(f"train/{key}", value, step)
                self.writer.add_scalar("train/lr", lr, step)
                self.writer.add_scalar("train/clips_per_s", clips_per_s, step)
                self.log.info("step %d epoch %d %s lr=%.3g clips/s=%.2f %s", step, self.state.epoch, loader_name,
                              lr, clips_per_s, " ".join(f"{k}={v:.4f}" for k, v in mean.items()))
        bar.set_postfix(loss=f"{values['loss']:.4f}", clips_s=f"{clips_per_s:.1f}", refresh=False)
        bar.update(1)
