"""Moments from window scores: merging adjacent matches, refining to the stride, ordered pairs."""
import numpy as np
import pytest

from index.moments import moments, ordered_pair, threshold
from media import segment_windows

WINDOWS = segment_windows(24.0, 8.0, 4.0)  # [0,8] [4,12] [8,16] [12,20] [16,24]


def test_windows_are_what_the_tests_assume():
    assert WINDOWS == [(0, 8), (4, 12), (8, 16), (12, 20), (16, 24)]


def test_two_matching_windows_merge_and_refine_to_their_overlap():
    found = moments(WINDOWS, [0.1, 0.8, 0.7, 0.1, 0.1])
    assert [(m.start, m.end) for m in found] == [(8.0, 12.0)]  # both neighbours cut a stride off each end
    assert found[0].score == pytest.approx(0.8) and found[0].window == 1


def test_isolated_window_keeps_the_half_beside_the_better_neighbour():
    found = moments(WINDOWS, [0.1, 0.3, 0.9, 0.1, 0.1])
    assert [(m.start, m.end) for m in found] == [(8.0, 12.0)]  # window [8,16], left neighbour scores higher
    tie = moments(WINDOWS, [0.1, 0.1, 0.9, 0.1, 0.1])
    assert [(m.start, m.end) for m in tie] == [(8.0, 16.0)]


def test_edge_window_is_cut_only_where_a_neighbour_exists():
    found = moments(WINDOWS, [0.9, 0.1, 0.1, 0.1, 0.1])
    assert [(m.start, m.end) for m in found] == [(0.0, 4.0)]


def test_separate_matches_are_separate_non_overlapping_moments_best_first():
    found = moments(WINDOWS, [0.7, 0.1, 0.1, 0.1, 0.9])
    assert [(m.start, m.end, m.score) for m in found] == [(20.0, 24.0, 0.9), (0.0, 4.0, 0.7)]
    assert moments(WINDOWS, [0.7, 0.1, 0.1, 0.1, 0.9], limit=1)[0].score == 0.9
    for a, b in zip(found, found[1:]):
        assert a.end <= b.start or b.end <= a.start


def test_flat_scores_make_one_moment_of_the_whole_video():
    assert [(m.start, m.end) for m in moments(WINDOWS, [0.5] * 5)] == [(0.0, 24.0)]


def test_single_window_video_and_bad_input():
    assert [(m.start, m.end) for m in moments([(0.0, 3.0)], [0.2])] == [(0.0, 3.0)]
    with pytest.raises(ValueError):
        moments(WINDOWS, [0.1, 0.2])


def test_best_moment_score_is_the_best_window_score():
    rng = np.random.default_rng(0)
    for _ in range(200):
        scores = rng.uniform(-0.2, 0.6, len(WINDOWS))
        assert moments(WINDOWS, scores)[0].score == pytest.approx(scores.max())
        assert threshold(scores) <= scores.max()


def test_ordered_pair_needs_the_second_after_the_first():
    first = [0.9, 0.1, 0.1, 0.1, 0.1]  # A near the start
    then = [0.1, 0.1, 0.1, 0.1, 0.9]  # B near the end
    a, b, score = ordered_pair(WINDOWS, first, then, max_gap=30)
    assert (a.start, a.end, b.start, b.end) == (0.0, 4.0, 20.0, 24.0) and score == pytest.approx(0.9)
    assert ordered_pair(WINDOWS, then, first, max_gap=30) is None  # B then A: no pair in order
    assert ordered_pair(WINDOWS, first, then, max_gap=10) is None  # 16 s apart
