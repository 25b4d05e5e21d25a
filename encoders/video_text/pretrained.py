"""Building, saving and loading joint video-text models, and the committed demo model.

Every consumer (training, evaluation, the service) gets (model, tokenizer) from `load_video_text_model` or
`build_video_text_model`. The saved form is a folder: `config.json` + `model.safetensors` (+ tokenizer files for a
custom text directory).
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict
from typing import Any

import torch

from encoders.bert import BertForMaskedLMFusion, pretrained_text_state_dict, resolve_text_source
from encoders.checkpoint import CheckpointError, torch_load
from encoders.video_text.config import VideoTextConfig, official_config
from encoders.video_text.model import VideoTextModel
from encoders.video_text.tokenize import tokenizer_for

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 2
# Format 1 also stored how a model was trained (now training.config.ObjectiveConfig); those fields are dropped.
FORMAT_1_TRAINING_FIELDS = ("mask_type", "video_mask_ratio", "image_mask_ratio", "mlm_prob", "vtm_hard_negatives",
                            "uta_norm_type", "uta_loss_type", "loss_weights")
DEMO_MODEL_ENV = "VMR_DEMO_MODEL"
DEMO_MODEL_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pretrained",
                              "videomamba_demo")


def demo_model_path() -> str:
    """The embedded default model of the service, the evaluator and the README: $VMR_DEMO_MODEL if set, else the
    committed demo model (encoders/pretrained/videomamba_demo)."""
    return os.environ.get(DEMO_MODEL_ENV) or DEMO_MODEL_DIR


def build_video_text_model(cfg: VideoTextConfig) -> tuple[VideoTextModel, Any]:
    """A fresh model (pretrained parts loaded as the config says) and its tokenizer."""
    model = VideoTextModel(cfg)
    tokenizer = tokenizer_for(cfg.text_encoder)
    _set_special_ids(model, tokenizer)
    return model, tokenizer


def load_video_text_model(path: str, map_location: str | torch.device = "cpu", weights_only: bool = True,
                          **overrides) -> tuple[VideoTextModel, Any]:
    """Load (model, tokenizer) from a `save_pretrained` directory or an official `.pth` checkpoint file.

    `overrides` replace config fields (e.g. teacher="none" to drop a stored teacher, or for an official
    file any `official_config` field such as vision_overrides={"num_frames": 16}). The model is returned in
    eval mode. weights_only=False unpickles arbitrary objects in an official `.pth` (only for trusted files).
    """
    if os.path.isdir(path):
        model = _load_saved(path, overrides)
        tokenizer = tokenizer_for(model.cfg.text_encoder, path)
    elif os.path.isfile(path):
        state = torch_load(path, weights_only)  # before building the model: a wrong file fails fast
        cfg = official_config(**overrides)
        model = VideoTextModel(cfg)
        try:
            model.load_official_state_dict(state)
        except CheckpointError as exc:
            raise CheckpointError(f"{path}: {exc}") from None
        tokenizer = tokenizer_for(cfg.text_encoder)
    else:
        raise FileNotFoundError(f"no model directory or checkpoint file at {path!r}")
    _set_special_ids(model, tokenizer)
    return model.to(map_location).eval(), tokenizer


def save_pretrained(model: VideoTextModel, directory: str, only_changed: bool = False,
                    include_teacher: bool = False, half: bool = False) -> None:
    """Write `config.json` + `model.safetensors`.

    only_changed=True stores only tensors that differ from the text encoder's packaged pretrained weights
    (the rest are re-filled from the package on load), so a small demo model takes a few MB.
    half=True stores float tensors as float16 (half the file; loading casts them back to the model's dtype).
    Tied tensors (the MLM decoder shares the word embeddings) are stored once.
    """
    from safetensors.torch import save_file

    os.makedirs(directory, exist_ok=True)
    state = {k: v for k, v in model.state_dict().items() if include_teacher or not k.startswith("clip_teacher.")}
    stored, aliases, seen = {}, {}, {}
    for k, v in state.items():
        key = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape))
        if key in seen:
            aliases[k] = seen[key]
        else:
            seen[key] = k
            stored[k] = v
    from_package = []
    if only_changed:
        reference = _packaged_text_reference(model)
        from_package = sorted(k for k, v in stored.items()
                              if k in reference and torch.equal(v.detach().cpu(), reference[k]))
        stored = {k: v for k, v in stored.items() if k not in from_package}
    cast = lambda v: v.half() if half and v.is_floating_point() else v  # noqa: E731
    save_file({k: cast(v.detach()).contiguous().cpu() for k, v in stored.items()},
              os.path.join(directory, WEIGHTS_NAME))
    cfg = asdict(model.cfg)
    cfg.update(vision_pretrained=None, teacher_path=None if include_teacher else model.cfg.teacher_path)
    meta = {"format_version": FORMAT_VERSION, "config": cfg, "aliases": aliases, "filled_from_package": from_package,
            "includes_teacher": include_teacher and model.clip_teacher is not None}
    with open(os.path.join(directory, CONFIG_NAME), "w") as f:
        json.dump(meta, f, indent=1)


def _packaged_text_reference(model: VideoTextModel) -> dict[str, torch.Tensor]:
    """The text encoder's pretrained tensors under the model's key names (empty without a weights dir)."""
    _, weights_dir = resolve_text_source(model.cfg.text_encoder)
    if weights_dir is None or not model.cfg.text_pretrained:
        return {}
    ref = pretrained_text_state_dict(model.text_bert, weights_dir)
    bert_prefix = "text_encoder.bert." if isinstance(model.text_encoder, BertForMaskedLMFusion) else "text_encoder."
    return {("text_encoder." if k.startswith("cls.") else bert_prefix) + k: v for k, v in ref.items()}


def _set_special_ids(model: VideoTextModel, tokenizer) -> None:
    model.special_token_ids = {"pad": tokenizer.pad_token_id, "cls": tokenizer.cls_token_id,
                               "sep": tokenizer.sep_token_id, "mask": tokenizer.mask_token_id}


def read_saved_config(directory: str) -> dict[str, Any]:
    """The stored config.json of a saved model, upgraded to the current format."""
    config_file = os.path.join(directory, CONFIG_NAME)
    try:
        with open(config_file) as f:
            meta = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{config_file} is not valid JSON ({exc})") from None
    version = meta.get("format_version") if isinstance(meta, dict) else None
    if version == 1:
        meta["config"] = {k: v for k, v in meta["config"].items() if k not in FORMAT_1_TRAINING_FIELDS}
    elif version != FORMAT_VERSION:
        raise CheckpointError(f"{config_file}: format_version {version!r}, expected 1 or {FORMAT_VERSION} (is it a "
                              "folder written by save_pretrained?)")
    return meta


def _load_saved(directory: str, overrides: dict[str, Any]) -> VideoTextModel:
    from safetensors.torch import load_file

    config_file, weights_file = os.path.join(directory, CONFIG_NAME), os.path.join(directory, WEIGHTS_NAME)
    for f in (config_file, weights_file):
        if not os.path.isfile(f):
            raise CheckpointError(f"{directory!r} is not a saved VideoTextModel: {os.path.basename(f)} is missing "
                                  "(a model folder is what save_pretrained or training writes as <output>/model)")
    meta = read_saved_config(directory)
    cfg_dict = {**meta["config"], **overrides}
    from_package = set(meta["filled_from_package"])
    cfg_dict["text_pretrained"] = bool(from_package)
    keep_teacher_path = cfg_dict["teacher"] != "none" and not meta["includes_teacher"]
    cfg = VideoTextConfig.from_dict({**cfg_dict,
                                     "teacher_path": cfg_dict["teacher_path"] if keep_teacher_path else None})
    model = VideoTextModel(cfg)
    try:
        stored = load_file(weights_file)
    except Exception as exc:  # safetensors raises its own SafetensorError for a damaged file
        raise CheckpointError(f"{weights_file} is not a readable .safetensors file ({exc})") from None
    if model.clip_teacher is None:
        stored = {k: v for k, v in stored.items() if not k.startswith("clip_teacher.")}
    own = model.state_dict()
    covered = set(stored) | from_package | {a for a, src in meta["aliases"].items()
                                            if src in stored or src in from_package}
    if model.clip_teacher is not None and not meta["includes_teacher"]:
        covered |= {k for k in own if k.startswith("clip_teacher.")}
    missing, unexpected = sorted(set(own) - covered), sorted(set(stored) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"{weights_file} does not fit its config: missing {missing[:8]}, unexpected {unexpected[:8]}")
    model.load_state_dict(stored, strict=False)
    return model
