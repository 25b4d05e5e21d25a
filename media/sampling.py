"""Which frames to read: the official sampling rule, and the windows that cut a long video into segments."""
from __future__ import annotations

import math
import random

import numpy as np


def get_frame_indices(num_frames: int, vlen: int, sample: str = "rand", fix_start: int | None = None,
                      rng: random.Random | None = None) -> list[int]:
    """The official rule: ``num_frames`` equal intervals of ``[0, vlen)`` (bounds ``linspace(...).astype(int)``,
    each interval ``[a, b-1]``); ``rand`` picks ``randrange(a, b-1)`` per interval (a sorted random subset when
    an interval is too short), ``fix_start`` takes ``a + fix_start``, ``middle`` takes ``(a + b - 1) // 2``;
    padded with the last index up to ``num_frames`` when ``vlen < num_frames``."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if vlen < 1:
        raise ValueError(f"vlen must be >= 1, got {vlen}")
    if sample not in ("rand", "middle"):
        raise ValueError(f"sample must be 'rand' or 'middle', got {sample!r}")
    rng = rng or random
    acc = min(num_frames, vlen)
    bounds = np.linspace(0, vlen, acc + 1).astype(int)
    ranges = [(int(bounds[i]), int(bounds[i + 1]) - 1) for i in range(acc)]
    if sample == "rand":
        if all(b > a for a, b in ranges):
            indices = [rng.randrange(a, b) for a, b in ranges]
        else:
            indices = sorted(rng.sample(range(vlen), acc))
    elif fix_start is not None:
        indices = [a + fix_start for a, _ in ranges]
    else:
        indices = [(a + b) // 2 for a, b in ranges]
    return indices + [indices[-1]] * (num_frames - len(indices))


def trimmed_length(vlen: int, fps: float, seconds: float = 30.0) -> int:
    """``trimmed30``: only the first ``seconds`` of the video are sampled from."""
    return max(1, min(vlen, int(fps * seconds))) if fps > 0 else vlen


def segment_windows(duration: float, window: float, stride: float) -> list[tuple[float, float]]:
    """Overlapping ``(start, end)`` windows (seconds) covering ``[0, duration]``; the last one ends at
    ``duration``. A video shorter than one window is one window."""
    if window <= 0 or stride <= 0:
        raise ValueError(f"window and stride must be > 0, got {window} and {stride}")
    if duration <= window:
        return [(0.0, float(duration))]
    starts = [i * stride for i in range(int(math.floor((duration - window) / stride)) + 1)]
    if starts[-1] + window < duration:
        starts.append(duration - window)
    return [(float(s), float(min(s + window, duration))) for s in starts]
