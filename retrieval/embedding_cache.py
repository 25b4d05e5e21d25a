"""Benchmark embeddings cached on disk, so re-ranking settings can change without re-encoding the videos."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from retrieval.evaluator import Embeddings


def embeddings_key(model_key: str, bench_name: str, split: str, data_root: str, num_videos: int, num_texts: int,
                   max_txt_len: int, num_frames: int, image_size: int, frame_average: bool) -> str:
    """Everything the embeddings depend on: the weights, the split's files and how clips are sampled."""
    parts = [model_key, bench_name, split, str(Path(data_root).resolve()), num_videos, num_texts, max_txt_len,
             num_frames, "middle", image_size] + (["frame_average"] if frame_average else [])
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def load_embeddings(path: Path) -> Embeddings | None:
    from safetensors.torch import load_file

    if not path.is_file():
        return None
    return Embeddings(**load_file(str(path)))


def save_embeddings(path: Path, emb: Embeddings) -> None:
    """Written to a temporary name and renamed, so a reader never sees half a file."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(emb.state_dict(), str(tmp))
    tmp.replace(path)
