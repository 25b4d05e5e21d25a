"""AdamW with the usual weight-decay exclusions and a step-based cosine schedule with linear warmup."""
from __future__ import annotations

import math

import torch
import torch.nn as nn

# Parameters that are positions, tokens or SSM dynamics: decaying them only hurts (as in timm/VideoMamba).
NO_DECAY_KEYWORDS = ("pos_embed", "cls_token", "temporal_pos_embedding", "A_log", "A_b_log", "temp")
NO_DECAY_SUFFIXES = (".D", ".D_b", ".bias")


def skips_weight_decay(name: str, param: nn.Parameter, extra: set[str] = frozenset()) -> bool:
    leaf = name.rsplit(".", 1)[-1]
    return (
        param.ndim <= 1
        or name in extra
        or leaf in ("D", "D_b")
        or name.endswith(NO_DECAY_SUFFIXES)
        or any(k in name for k in NO_DECAY_KEYWORDS)
    )


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: decayed weights and everything in `skips_weight_decay` (plus `model.no_weight_decay()`)."""
    extra: set[str] = set()
    for module_name, module in model.named_modules():
        if hasattr(module, "no_weight_decay"):
            prefix = f"{module_name}." if module_name else ""
            extra |= {f"{prefix}{n}" for n in module.no_weight_decay()}
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if skips_weight_decay(name, param, extra) else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, lr: float, weight_decay: float,
                    betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.AdamW:
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=tuple(betas))


class CosineWarmup:
    """Per-step learning rate: linear warmup from 0, then cosine down to `min_lr_ratio * lr`.

    Stateless apart from the step counter, so a resumed run recomputes exactly the same rates."""

    def __init__(self, optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int,
                 min_lr_ratio: float = 0.01):
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        self.optimizer = optimizer
        self.total_steps = total_steps
        self.warmup_steps = max(0, min(warmup_steps, total_steps))
        self.min_lr_ratio = min_lr_ratio
        self.base_lrs = [g.get("initial_lr", g["lr"]) for g in optimizer.param_groups]
        for group, base in zip(optimizer.param_groups, self.base_lrs):
            group["initial_lr"] = base
        self.step_count = 0
        self._apply()

    def factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    def _apply(self) -> None:
        f = self.factor(self.step_count)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * f

    def step(self) -> None:
        self.step_count += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {"step_count": self.step_count, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps, "min_lr_ratio": self.min_lr_ratio, "base_lrs": self.base_lrs}

    def reschedule(self, total_steps: int, warmup_steps: int) -> None:
        """New schedule lengths at the current step (a resumed run given a different `max_steps`)."""
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        self.total_steps, self.warmup_steps = total_steps, max(0, min(warmup_steps, total_steps))
        self._apply()

    def load_state_dict(self, state: dict) -> None:
        for key in ("step_count", "total_steps", "warmup_steps", "min_lr_ratio", "base_lrs"):
            setattr(self, key, state[key])
        self._apply()
