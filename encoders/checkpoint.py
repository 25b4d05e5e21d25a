"""Loading official VideoMamba checkpoints (and our own) into `VideoMamba`, strictly.

Accepted layouts (all mapped onto the vision-encoder key names of `videomamba.py`):
  raw state dict, or wrapped in {'model': ...} / {'module': ...}, keys optionally prefixed 'module.' (DDP);
  multimodal UMT (`vision_encoder.*`; clip_teacher.*, text_encoder.*, vision_proj/text_proj/itm_head/temp dropped);
  masked pretraining (video_sm: clip_decoder, no pool_norm);
  classification (video_sm/image_sm: `norm_f` -> `norm`, `head.*` dropped);
  ImageNet (2-D patch weights (D,3,p,p) inflated to (D,3,k,p,p) at the centre frame; no temporal embedding:
  it starts at zero, as the official inflation leaves it).
The joint video-text model's official layouts (`text_encoder.bert.*` or `text_encoder.*`, `clip_teacher.*`) are
renamed by `convert_official_video_text` before the vision part goes through the same filter.
pos_embed is resized bicubically to the model's patch grid (cls entry kept) and temporal_pos_embedding linearly
to its frame count.

Heads rule: strict loading fails on any missing or unexpected key. A layout without `pool_norm` /
`clip_decoder` loads strictly into a model built without them (`add_pool_norm=False`, `clip_return_layer=0`),
or into a full model when the caller names them as freshly initialised: `load_checkpoint(..., new_heads=
("pool_norm", "clip_decoder"))`. The error message says which of these applies.
"""
from __future__ import annotations

import json
import pickle
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

class CheckpointError(ValueError):
    """A file or folder that exists but is not a loadable model: not a checkpoint at all, or one whose tensors do
    not fit the model. The message names it and says why; command lines print it as it is."""


MULTIMODAL_DROP = ("clip_teacher.", "text_encoder.", "vision_proj.", "text_proj.", "itm_head.")
HEAD_MODULES = ("pool_norm", "clip_decoder")


def unwrap(checkpoint: dict) -> dict[str, torch.Tensor]:
    """The state dict inside a training checkpoint ('model' or 'module' entry, 'module.' key prefix)."""
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"a checkpoint must be a dict of tensors, got {type(checkpoint).__name__}")
    for key in ("model", "module"):
        if isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
            break
    if checkpoint and all(k.startswith("module.") for k in checkpoint):
        checkpoint = {k[len("module."):]: v for k, v in checkpoint.items()}
    return dict(checkpoint)


def checkpoint_filter_fn(state_dict: dict, model: nn.Module) -> dict[str, torch.Tensor]:
    """Map any accepted layout onto `model`'s key names and shapes (timm-style filter; see the module doc)."""
    sd = unwrap(state_dict)
    if any(k.startswith("vision_encoder.") for k in sd):
        sd = {k[len("vision_encoder."):] if k.startswith("vision_encoder.") else k: v for k, v in sd.items()
              if not (k.startswith(MULTIMODAL_DROP) or k == "temp")}
    if any(k.startswith("norm_f.") for k in sd):  # classification layout
        sd = {("norm." + k[len("norm_f."):]) if k.startswith("norm_f.") else k: v for k, v in sd.items()
              if not k.startswith("head.")}
    own = model.state_dict()
    patch = sd.get("patch_embed.proj.weight")
    if patch is not None and patch.dim() == 4:  # ImageNet 2-D patch embedding
        sd["patch_embed.proj.weight"] = inflate_patch_weight(patch, own["patch_embed.proj.weight"].shape[2])
        sd.setdefault("temporal_pos_embedding", torch.zeros_like(own["temporal_pos_embedding"]))
    if "pos_embed" in sd and sd["pos_embed"].shape != own["pos_embed"].shape:
        sd["pos_embed"] = resize_pos_embed(sd["pos_embed"], own["pos_embed"].shape[1] - 1)
    if "temporal_pos_embedding" in sd and sd["temporal_pos_embedding"].shape != own["temporal_pos_embedding"].shape:
        sd["temporal_pos_embedding"] = resize_temporal_pos_embed(sd["temporal_pos_embedding"],
                                                                 own["temporal_pos_embedding"].shape[1])
    return sd


def convert_official_video_text(state_dict: dict, mlm_form: bool, with_teacher: bool) -> dict[str, torch.Tensor]:
    """An official UMT_VIDEOMAMBA state dict (either text form) under our joint model's key names.

    `text_encoder.bert.` <-> `text_encoder.` follows `mlm_form` (a model with the MLM head keeps `bert.`);
    `text_encoder.cls.*` is dropped without the MLM head; `clip_teacher.*` is dropped without a teacher.
    """
    sd = dict(state_dict)
    for wrapper in ("model", "module", "state_dict"):
        if wrapper in sd and isinstance(sd[wrapper], dict):
            sd = dict(sd[wrapper])
    renamed = {}
    for k, v in sd.items():
        if k.startswith("text_encoder."):
            rest = k[len("text_encoder."):].removeprefix("bert.")
            if rest.startswith("cls."):
                if not mlm_form:
                    continue
                k = "text_encoder." + rest
            else:
                k = ("text_encoder.bert." if mlm_form else "text_encoder.") + rest
        elif k.startswith("clip_teacher.") and not with_teacher:
            continue
        renamed[k] = v
    return renamed


def inflate_patch_weight(weight_2d: torch.Tensor, frames: int) -> torch.Tensor:
    """(D, C, p, p) -> (D, C, frames, p, p), the 2-D kernel at the centre frame, zeros elsewhere (official)."""
    weight = weight_2d.new_zeros(weight_2d.shape[:2] + (frames,) + weight_2d.shape[2:])
    weight[:, :, frames // 2] = weight_2d
    return weight


def resize_pos_embed(pos_embed: torch.Tensor, num_patches: int) -> torch.Tensor:
    """(1, 1 + g*g, D) -> (1, 1 + num_patches, D): cls entry kept, the g x g grid resized bicubically."""
    old, new = _square(pos_embed.shape[1] - 1, "pos_embed"), _square(num_patches, "the model's patch grid")
    cls, grid = pos_embed[:, :1], pos_embed[:, 1:]
    grid = grid.float().reshape(1, old, old, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(new, new), mode="bicubic", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new * new, -1).to(pos_embed.dtype)
    return torch.cat([cls, grid], dim=1)


def resize_temporal_pos_embed(temporal: torch.Tensor, frames: int) -> torch.Tensor:
    """(1, T, D) -> (1, frames, D) by linear interpolation over T (as the official loader)."""
    resized = F.interpolate(temporal.float().transpose(1, 2), size=frames, mode="linear", align_corners=False)
    return resized.transpose(1, 2).to(temporal.dtype)


def _square(n: int, what: str) -> int:
    side = int(round(n ** 0.5))
    if side * side != n:
        raise ValueError(f"{what} has {n} patch positions, not a square grid")
    return side


def read_state_dict(path: str | Path) -> dict:
    """A checkpoint file as a dict: .safetensors, or a torch pickle read with weights_only=True."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # safetensors raises its own SafetensorError for a damaged file
            raise CheckpointError(f"{path} is not a readable .safetensors file ({exc})") from None
    return torch_load(path, weights_only=True)


def torch_load(path: str | Path, weights_only: bool = True) -> dict:
    """A torch checkpoint file as a dict; CheckpointError for anything else (a text file, a pickle of objects
    that weights_only refuses, a truncated file, a list)."""
    with open(path, "rb") as f:
        head = f.read(2)
    if head != b"PK" and head[:1] != b"\x80":  # torch.save writes a zip archive (a pickle before torch 1.6)
        raise CheckpointError(f"{path} is not a PyTorch checkpoint (neither the zip archive nor the pickle that "
                              "torch.save writes)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=weights_only)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"{path} holds pickled objects other than tensors and containers, which are not "
                              f"loaded for safety (weights_only=True); re-save its state dict "
                              f"({str(exc).splitlines()[0]})") from exc
    except Exception as exc:  # torch.load fails with KeyError, RuntimeError, EOFError... on what is no checkpoint
        raise CheckpointError(f"{path} is not a PyTorch checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a checkpoint (a dict of tensors)")
    return state


def load_checkpoint(model: nn.Module, path: str | Path, strict: bool = True,
                    new_heads: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """Load `path` into `model` through `checkpoint_filter_fn`.

    strict: any missing key (outside `new_heads`), unexpected key or shape mismatch raises one ValueError
    listing them all. new_heads: module names (e.g. "pool_norm", "clip_decoder") whose keys may be absent
    and keep their fresh initialisation. Returns {'missing': [...], 'unexpected': [...]} of what was skipped.
    """
    sd = checkpoint_filter_fn(read_state_dict(path), model)
    own = model.state_dict()
    allowed = tuple(h.rstrip(".") + "." for h in new_heads)
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    mismatched = [f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in own if k in sd and sd[k].shape != own[k].shape]
    fatal_missing = [k for k in missing if not k.startswith(allowed)]
    if mismatched or (strict and (fatal_missing or unexpected)):
        raise CheckpointError(_mismatch_message(path, model, fatal_missing, unexpected, mismatched))
    model.load_state_dict({k: v for k, v in sd.items() if k in own}, strict=False)
    return {"missing": missing, "unexpected": unexpected}


def _mismatch_message(path, model, missing, unexpected, mismatched) -> str:
    parts = [f"checkpoint {path} does not fit {type(model).__name__}:"]
    if missing:
        parts.append(f"{len(missing)} missing keys {missing}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys {unexpected}")
    if mismatched:
        parts.append(f"{len(mismatched)} shape mismatches {mismatched}")
    heads = sorted({k.split(".")[0] for k in missing} & set(HEAD_MODULES))
    if heads:
        parts.append(f"(this layout has no {'/'.join(heads)}: build the model without them (add_pool_norm=False, "
                     f"clip_return_layer=0) or pass new_heads={tuple(heads)} to keep them freshly initialised)")
    return " ".join(parts)


def save_safetensors(model: nn.Module, path: str | Path) -> None:
    """Write the state dict (and the model config, when it has one, as metadata) to a .safetensors file."""
    from safetensors.torch import save_file

    metadata = {"format": "pt", "model": type(model).__name__}
    cfg = getattr(model, "cfg", None)
    if cfg is not None:
        metadata["config"] = json.dumps(asdict(cfg))
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(path), metadata=metadata)
