"""Vision tokens of every indexed window (float16, `<data_dir>/tokens/<video id>.npy`), kept at ingestion so the
matching head can re-rank search results without decoding any video again. A window costs
`Embedder.token_bytes()` (48 KiB for the demo model, about 590 KiB for VideoMamba-Ti at 8 x 224^2): with
`--rerank-tokens auto` they are kept when a window's tokens take at most AUTO_MAX_BYTES; re-ranking a video without
them decodes its window instead."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from encoders.video_text import Embedder
from service.config import ServiceConfig
from service.layout import layout

AUTO_MAX_BYTES = 256 * 1024


def enabled(config: ServiceConfig, embedder: Embedder) -> bool:
    return config.rerank_tokens == "on" or (config.rerank_tokens == "auto" and
                                            embedder.token_bytes() <= AUTO_MAX_BYTES)


def path(config: ServiceConfig, video_id: int) -> Path:
    return layout(config).tokens / f"{video_id}.npy"


def save(config: ServiceConfig, video_id: int, tokens: np.ndarray) -> None:
    target = path(config, video_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".tmp.npy")
    np.save(partial, tokens.astype(np.float16))
    partial.replace(target)


def window(config: ServiceConfig, video_id: int, index: int) -> np.ndarray | None:
    """One window's (N, D) tokens, or None when they were not kept."""
    file = path(config, video_id)
    if not file.is_file():
        return None
    stored = np.load(file, mmap_mode="r")
    return np.asarray(stored[index]) if 0 <= index < len(stored) else None


def remove(config: ServiceConfig, video_id: int) -> None:
    path(config, video_id).unlink(missing_ok=True)
