"""The one model registry: every constructible model is a named factory, so CLIs, configs and
checkpoints refer to models by name (as timm and open_clip do)."""
from __future__ import annotations

from typing import Callable

import torch.nn as nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    if fn.__name__ in _MODELS:
        raise ValueError(f"model {fn.__name__!r} is registered twice")
    _MODELS[fn.__name__] = fn
    return fn


def list_models(prefix: str = "") -> list[str]:
    return sorted(n for n in _MODELS if n.startswith(prefix))


def create_model(name: str, pretrained: str | None = None, strict: bool = True, **overrides) -> nn.Module:
    """Build a registered model; `pretrained` is a checkpoint path loaded through the model's filter."""
    if name not in _MODELS:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(list_models())}")
    model = _MODELS[name](**overrides)
    if pretrained:
        from encoders.checkpoint import load_checkpoint

        load_checkpoint(model, pretrained, strict=strict)
    return model
