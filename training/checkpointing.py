"""Crash-safe training checkpoints: each file is written to a temporary name, fsynced, then renamed, so a
process killed at any moment leaves either the old set of checkpoints or the old set plus a complete
new one, never a truncated file under a checkpoint name. Only the last `keep_last` are kept."""
from __future__ import annotations

import os
import random
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_PATTERN = re.compile(r"^checkpoint_(\d{8})\.pt$")


def rng_state() -> dict[str, Any]:
    """Every RNG stream the training step touches, in a form `torch.load(weights_only=True)` accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [kind, keys.tolist(), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def atomic_torch_save(obj: Any, path: Path, pause_before_rename: float = 0.0) -> None:
    """torch.save to `path` through a temp file in the same folder + fsync + rename + folder fsync."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        if pause_before_rename:
            time.sleep(pause_before_rename)  # lets tests kill the process between write and rename
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class Checkpointer:
    """Writes `checkpoint_<step>.pt` into `folder`; `latest()` finds the newest complete one."""

    def __init__(self, folder: str | Path, keep_last: int = 3, pause_before_rename: float = 0.0):
        if keep_last < 1:
            raise ValueError(f"keep_last must be >= 1, got {keep_last}")
        self.folder = Path(folder)
        self.keep_last = keep_last
        self.pause_before_rename = pause_before_rename

    def path_for(self, step: int) -> Path:
        return self.folder / f"checkpoint_{step:08d}.pt"

    def list(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        found = [p for p in self.folder.iterdir() if CHECKPOINT_PATTERN.match(p.name)]
        return sorted(found, key=lambda p: int(CHECKPOINT_PATTERN.match(p.name).group(1)))

    def latest(self) -> Path | None:
        found = self.list()
        return found[-1] if found else None

    def save(self, state: dict[str, Any], step: int) -> Path:
        """Write atomically, then drop checkpoints beyond `keep_last` and temp files of killed writers."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for stale in self.folder.glob(".checkpoint_*.pt.tmp-*"):
            stale.unlink(missing_ok=True)
        path = self.path_for(step)
        atomic_torch_save(state, path, self.pause_before_rename)
        for old in self.list()[:-self.keep_last]:
            old.unlink(missing_ok=True)
        return path

    @staticmethod
    def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
        try:
            return torch.load(path, map_location=map_location, weights_only=True)
        except Exception as err:
            raise RuntimeError(f"checkpoint {str(path)!r} could not be read ({err})") from err
