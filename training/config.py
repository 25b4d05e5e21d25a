"""Pretraining configuration: one dataclass tree holds every default; a YAML file and `--set a.b=v`
overrides are applied on top of it, and unknown keys are rejected by name."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from training.losses import UTA_LOSS_TYPES, UTA_NORM_TYPES
from training.masking import MASK_TYPES

DATA_CHOICES = ("webvid", "cc3m", "5m", "synth")


class ConfigError(ValueError):
    """A configuration that cannot run: an unknown key (named with its dotted path), a value of the wrong type or
    range, an unreadable YAML file. Command lines print the message as it is."""


@dataclass
class DataConfig:
    name: str = "webvid"  # webvid | cc3m | 5m (webvid videos + cc3m images) | synth
    root: str = "data"  # corpus folder, searched as retrieval.sources says (for the 5m mix: both corpora's)
    split: str = "train"
    annotation: str = ""  # an annotation file (JSON, or WebVid's CSV) instead of the one found under root
    media_dir: str = ""  # the folder of that annotation's videos or images ("" = found beside it)
    shards: str = ""  # WebDataset shards instead: a brace pattern, a folder or a .txt list of paths or URLs
    num_frames: int = 8
    image_size: int = 224
    batch_size: int = 64  # video clips per rank per step
    image_batch_size: int = 64  # images per rank per step (cc3m, 5m)
    max_text_len: int = 32
    num_workers: int = 4
    eval_split: str = ""  # held-out split evaluated after every epoch ("" = none)
    augment: bool = True  # RandomResizedCrop + flip (official); off when captions name directions or sizes
    group_batches: bool = False  # keep each hard-negative group (synthetic corpora) inside one batch


@dataclass
class OptimConfig:
    lr: float = 8e-5
    min_lr_ratio: float = 0.01
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    epochs: float = 1.0
    warmup_epochs: float = 0.2
    max_steps: int = 0  # > 0 stops early (and sets the schedule length when the data length is unknown)
    max_grad_norm: float = -1.0  # <= 0 disables clipping, as the official configs do


@dataclass
class LossWeights:
    """How much each UMT loss counts in the total (the one place these are defined)."""

    vtc: float = 1.0
    vtm: float = 1.0
    mlm: float = 1.0
    uta: float = 0.0


@dataclass
class ObjectiveConfig:
    """How the UMT objective forms its losses: stage-1 video masking, MLM masking, hard negatives, UTA."""

    mask_type: str = "attention"  # random | tube | tube_row | random_row | attention (by the teacher's [CLS])
    video_mask_ratio: float = 0.8
    image_mask_ratio: float = 0.5
    mlm_prob: float = 0.5
    vtm_hard_negatives: bool = True
    uta_norm_type: str = "l2"
    uta_loss_type: str = "l2"


@dataclass
class ModelConfig:
    # encoders.video_text.VideoTextConfig fields; vision num_frames/img_size follow data.num_frames/image_size
    video_text: dict[str, Any] = field(default_factory=lambda: {"vision_model": "videomamba_middle",
                                                                "text_encoder": "minilm"})
    init_from: str = ""  # a save_pretrained folder to start from (stage 2 starts from stage 1's export)
    export_only_changed: bool = True  # the exported model stores only tensors that differ from packaged MiniLM
    export_half: bool = False  # the exported model stores float16 weights (loaded back as float32)


@dataclass
class TrainConfig:
    stage: int = 2  # 1: masked video + CLIP teacher (UTA); 2: unmasked, no teacher
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossWeights = field(default_factory=LossWeights)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    output_dir: str = "runs/pretrain"
    seed: int = 42
    bf16: bool = True  # autocast to bfloat16 on GPU (ignored on CPU)
    grad_checkpointing: bool = False
    save_every: int = 1000  # steps between checkpoints (a checkpoint is always written at the end)
    keep_last: int = 3
    log_every: int = 10
    resume: bool = False


def stage_defaults(stage: int) -> dict[str, Any]:
    """The official two-stage schedule (§4.4): stage 1 masked with UTA for 10 epochs at 4e-4,
    stage 2 unmasked without teacher for 1 epoch at 8e-5."""
    if stage == 1:
        return {"optim": {"lr": 4e-4, "epochs": 10.0, "warmup_epochs": 1.0}, "loss": {"uta": 1.0},
                "model": {"video_text": {"teacher": "clip_b16"}}, "objective": {"mask_type": "attention"}}
    if stage == 2:
        return {"optim": {"lr": 8e-5, "epochs": 1.0, "warmup_epochs": 0.2}, "loss": {"uta": 0.0},
                "model": {"video_text": {"teacher": "none"}}}
    raise ValueError(f"stage must be 1 or 2, got {stage!r}")


def _coerce(value: Any, current: Any, key: str) -> Any:
    if isinstance(current, bool):
        if isinstance(value, str):
            if value.lower() in ("1", "true", "yes"):
                return True
            if value.lower() in ("0", "false", "no"):
                return False
            raise ConfigError(f"config key {key!r} expects a boolean, got {value!r}")
        return bool(value)
    try:
        if isinstance(current, tuple):
            items = yaml.safe_load(value) if isinstance(value, str) else value
            return tuple(float(v) for v in items)
        if isinstance(current, float) and not isinstance(value, bool):
            return float(value)
        if isinstance(current, int) and not isinstance(value, bool):
            if isinstance(value, float) and not value.is_integer():
                raise ConfigError(f"config key {key!r} expects an integer, got {value!r}")
            return int(value)
    except (TypeError, ValueError, yaml.YAMLError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"config key {key!r} expects a {type(current).__name__}, got {value!r}") from None
    if isinstance(current, str):
        return str(value)
    return value


def merge(cfg: Any, updates: dict[str, Any], prefix: str = "") -> Any:
    """Apply a nested dict onto a dataclass in place; unknown keys raise with their dotted name."""
    names = {f.name for f in dataclasses.fields(cfg)}
    for key, value in updates.items():
        dotted = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(f"unknown config key {dotted!r}; valid here: {', '.join(sorted(names))}")
        current = getattr(cfg, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {dotted!r} is a section; give a mapping, got {value!r}")
            merge(current, value, prefix=f"{dotted}.")
        elif isinstance(current, dict):
            setattr(cfg, key, {**current, **(value or {})})
        else:
            setattr(cfg, key, _coerce(value, current, dotted))
    return cfg


def parse_override(text: str) -> dict[str, Any]:
    """`optim.lr=1e-4` -> {"optim": {"lr": 1e-4}} (the value is parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    path, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: the value is not valid YAML ({exc})") from None
    for part in reversed(path.strip().split(".")):
        value = {part: value}
    return value


def load_config(path: str | None = None, overrides: list[dict[str, Any]] | None = None,
                stage: int | None = None) -> TrainConfig:
    """Defaults, then the stage's official schedule, then the YAML file, then overrides (in order)."""
    file_values: dict[str, Any] = {}
    if path:
        file = Path(path)
        if not file.is_file():
            raise ConfigError(f"config file {path!r} does not exist (examples: training/configs/*.yaml)")
        try:
            file_values = yaml.safe_load(file.read_text()) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path!r} is not valid YAML ({exc})") from None
        if not isinstance(file_values, dict):
            raise ConfigError(f"config file {path!r} must hold a mapping at top level")
    chosen_stage = stage if stage is not None else file_values.get("stage", TrainConfig.stage)
    if chosen_stage not in (1, 2):
        raise ConfigError(f"stage must be 1 or 2, got {chosen_stage!r}")
    cfg = merge(TrainConfig(stage=chosen_stage), stage_defaults(chosen_stage))
    try:
        merge(cfg, file_values)
    except ConfigError as exc:
        raise ConfigError(f"config file {path!r}: {exc}") from None
    for update in overrides or []:
        merge(cfg, update)
    if stage is not None:
        cfg.stage = stage
    validate(cfg)
    return cfg


def validate(cfg: TrainConfig) -> None:
    if cfg.stage not in (1, 2):
        raise ConfigError(f"stage must be 1 or 2, got {cfg.stage}")
    objective = cfg.objective
    for name, allowed in (("mask_type", MASK_TYPES), ("uta_norm_type", UTA_NORM_TYPES),
                          ("uta_loss_type", UTA_LOSS_TYPES)):
        if getattr(objective, name) not in allowed:
            raise ConfigError(f"objective.{name} must be one of {allowed}, got {getattr(objective, name)!r}")
    if cfg.data.name not in DATA_CHOICES:
        raise ConfigError(f"data.name must be one of {DATA_CHOICES}, got {cfg.data.name!r}")
    if cfg.data.name == "5m" and (cfg.data.annotation or cfg.data.media_dir or cfg.data.shards):
        raise ConfigError("data.annotation, data.media_dir and data.shards name one corpus's data; the 5m mix finds "
                          "webvid's and cc3m's under data.root (see retrieval/sources.py)")
    if cfg.data.annotation and cfg.data.shards:
        raise ConfigError("give data.annotation or data.shards, not both")
    if cfg.data.batch_size < 1 or cfg.data.image_batch_size < 1:
        raise ConfigError("data.batch_size and data.image_batch_size must be >= 1")
    if cfg.optim.lr <= 0:
        raise ConfigError(f"optim.lr must be positive, got {cfg.optim.lr}")
    if cfg.optim.epochs <= 0 and cfg.optim.max_steps <= 0:
        raise ConfigError("set optim.epochs > 0 or optim.max_steps > 0")
    if cfg.keep_last < 1:
        raise ConfigError(f"keep_last must be >= 1, got {cfg.keep_last}")
    if cfg.save_every < 1:
        raise ConfigError(f"save_every must be >= 1, got {cfg.save_every}")


def to_dict(cfg: TrainConfig) -> dict[str, Any]:
    out = dataclasses.asdict(cfg)
    out["optim"]["betas"] = list(cfg.optim.betas)
    return out


def from_dict(values: dict[str, Any]) -> TrainConfig:
    return merge(TrainConfig(stage=int(values.get("stage", 2))), values)
