"""Moments: where in a video a query matches, from the scores of its overlapping time windows.

A window matches when its score is at least half-way from the video's median window score to its best
(`threshold`); the best window always matches. Matching windows that overlap or touch merge into one moment, scored
by its best window. Its boundaries are then refined to the segment stride: a non-matching window that overlaps the
moment's first (last) window cuts the moment's start (end) back to where that window ends (starts), since the event
is not inside it. When both cuts would leave nothing (one matching window between two non-matching ones that each
cover half of it), the half beside the better-scoring neighbour is kept, or the whole window on a tie.

With every window scored, a video's best moment has the video's best window score, so ranking videos by their
best window (what a vector index does) and by their best moment is the same ranking.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class Moment:
    start: float
    end: float
    score: float
    window: int  # index of its best window


def threshold(scores: np.ndarray, floor: float = -1.0) -> float:
    """Half-way from the median window score to the best, never below `floor`."""
    best, median = float(scores.max()), float(np.median(scores))
    return max(floor, median + 0.5 * (best - median))


def moments(spans: Sequence[tuple[float, float]], scores, limit: int | None = None,
            floor: float = -1.0) -> list[Moment]:
    """Non-overlapping moments of one video, best first. `spans` are its windows (start, end) in seconds, in time
    order, and `scores` their scores for one query."""
    scores = np.asarray(scores, dtype=np.float64)
    if len(spans) != len(scores) or not len(scores):
        raise ValueError(f"need one score per window and at least one window, got {len(spans)} and {len(scores)}")
    best = int(scores.argmax())
    matching = scores >= threshold(scores, floor) - 1e-9
    matching[best] = True
    found, i, n = [], 0, len(spans)
    while i < n:
        if not matching[i]:
            i += 1
            continue
        j = i
        while j + 1 < n and matching[j + 1] and spans[j + 1][0] <= spans[j][1]:
            j += 1
        found.append(_refined(spans, scores, matching, i, j))
        i = j + 1
    found.sort(key=lambda m: (-m.score, m.start))
    return found[:limit] if limit else found


def _refined(spans, scores, matching, first: int, last: int) -> Moment:
    start, end = spans[first][0], spans[last][1]
    left = _neighbour(spans, matching, first, -1)
    right = _neighbour(spans, matching, last, +1)
    cut_start = spans[left][1] if left is not None else start
    cut_end = spans[right][0] if right is not None else end
    if cut_start < cut_end:
        start, end = cut_start, cut_end
    elif scores[left] != scores[right]:  # both cuts exist (one alone always leaves a part)
        start, end = (start, cut_end) if scores[left] > scores[right] else (cut_start, end)
    top = first + int(np.argmax(scores[first:last + 1]))
    return Moment(float(start), float(end), float(scores[top]), top)


def _neighbour(spans, matching, index: int, step: int) -> int | None:
    """The non-matching window next to `index` in direction `step` when it overlaps window `index`."""
    other = index + step
    if not 0 <= other < len(spans) or matching[other]:
        return None
    a, b = spans[index], spans[other]
    return other if a[0] < b[1] and b[0] < a[1] else None


def ordered_pair(spans: Sequence[tuple[float, float]], first_scores, then_scores,
                 max_gap: float) -> tuple[Moment, Moment, float] | None:
    """The best (first, then) pair of moments of one video where `then` starts after `first` ends, at most
    `max_gap` seconds later; scored by the mean of the two moments' scores. None when no pair is in order."""
    best = None
    for a in moments(spans, first_scores):
        for b in moments(spans, then_scores):
            if b.start >= a.end - 1e-9 and b.start - a.end <= max_gap:
                score = (a.score + b.score) / 2
                if best is None or score > best[2]:
                    best = (a, b, score)
    return best


def unordered_pair(spans: Sequence[tuple[float, float]], first_scores,
                   then_scores) -> tuple[Moment, Moment, float]:
    """The order-blind baseline of `ordered_pair` (a bag of moments): each query's best moment wherever it lies,
    scored the same way, by the mean of the two moments' scores."""
    a, b = moments(spans, first_scores, 1)[0], moments(spans, then_scores, 1)[0]
    return a, b, (a.score + b.score) / 2
