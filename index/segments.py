"""How a long video is cut into overlapping windows for indexing."""
from __future__ import annotations


def segment_spans(duration: float, window: float, stride: float) -> list[tuple[float, float]]:
    """Windows of `window` seconds every `stride` seconds covering [0, duration]; the last one ends at `duration`.

    A video no longer than one window is a single segment.
    """
    if window <= 0 or stride <= 0:
        raise ValueError(f"segment window and stride must be positive, got window={window}, stride={stride}")
    if stride > window:
        raise ValueError(f"segment stride {stride}s is longer than the window {window}s: parts would be skipped")
    if duration <= 0:
        raise ValueError(f"video duration must be positive, got {duration}")
    if duration <= window:
        return [(0.0, float(duration))]
    spans, start = [], 0.0
    while start + window < duration:
        spans.append((start, start + window))
        start += stride
    spans.append((max(0.0, duration - window), float(duration)))
    return spans
