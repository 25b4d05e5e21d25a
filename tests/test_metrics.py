import pytest
import torch

from retrieval.metrics import query_ranks, rank_summary, retrieval_metrics, temporal_accuracy


def test_ranks_hand_computed():
    scores = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.3, 0.8], [0.7, 0.6, 0.1]])
    # query 0: gt 0 is best -> 1; query 1: gt 0 is last -> 3; query 2: gt 1 behind item 0 -> 2
    assert query_ranks(scores, [0, 0, 1]).tolist() == [1, 3, 2]


def test_ties_count_against_the_query():
    scores = torch.tensor([[0.5, 0.5, 0.5], [0.1, 0.5, 0.5], [1.0, 0.2, 0.2]])
    # all tied -> worst rank 3; gt 1 tied with item 2 -> 2; gt 0 alone on top -> 1
    assert query_ranks(scores, [0, 1, 0]).tolist() == [3, 2, 1]
    constant = torch.full((4, 4), -100.0)
    m = retrieval_metrics(constant, constant, [0, 1, 2, 3], [0, 1, 2, 3])
    assert m["t2v_r1"] == 0.0 and m["v2t_meanr"] == 4.0


def test_multiple_ground_truths_take_best_rank():
    # video 0 has texts 0 and 2; text 2 is ranked 1st, text 0 3rd -> rank 1
    v2t = torch.tensor([[0.1, 0.5, 0.9, 0.3], [0.8, 0.1, 0.2, 0.7]])
    assert query_ranks(v2t, [[0, 2], [1, 3]]).tolist() == [1, 2]


def test_paragraph_one_text_per_video_metrics():
    # paragraph benchmarks: one joined text per video, so txt2vid/vid2txt are identities
    t2v = torch.tensor([[3.0, 1.0, 2.0], [0.0, 1.0, 2.0], [1.0, 2.0, 3.0]])
    v2t = t2v.T.contiguous()
    m = retrieval_metrics(t2v, v2t, [0, 1, 2], [[0], [1], [2]])
    # t2v ranks: [1, 2, 1]; v2t columns: video0 [3,0,1] -> text0 rank 1; video1 [1,1,2] gt text1 tied with text0
    # and behind text2 -> 3; video2 [2,2,3] -> text2 rank 1
    assert m["t2v_r1"] == pytest.approx(200 / 3)
    assert m["v2t_r1"] == pytest.approx(200 / 3)
    assert m["t2v_medr"] == 1.0 and m["v2t_meanr"] == pytest.approx(5 / 3)
    assert m["r_mean"] == pytest.approx((200 / 3 + 100 + 100) * 2 / 6)


def test_rank_summary_even_median_and_recalls():
    s = rank_summary(torch.tensor([1, 4, 6, 20]), "x")
    assert s == {"x_r1": 25.0, "x_r5": 50.0, "x_r10": 75.0, "x_medr": 5.0, "x_meanr": 7.75}


def test_temporal_accuracy_strict():
    # 4 videos, one text each; group {0,1}: video0 prefers own text, video1 ties -> miss; group {2,3}: both hits
    v2t = torch.tensor(
        [[0.9, 0.1, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.7, 0.2], [0.0, 0.0, 0.1, 0.3]]
    )
    assert temporal_accuracy(v2t, [[0, 1], [2, 3]], [0, 1, 2, 3]) == 75.0


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="outside"):
        query_ranks(torch.zeros(2, 2), [0, 5])
    with pytest.raises(ValueError, match="NaN"):
        query_ranks(torch.tensor([[float("nan"), 0.0]]), [0])
    with pytest.raises(ValueError, match="2 queries but 1"):
        query_ranks(torch.zeros(2, 2), [0])
    with pytest.raises(ValueError, match="at least 2"):
        temporal_accuracy(torch.zeros(2, 2), [[0]], [0, 1])
    with pytest.raises(ValueError, match="transposed"):
        retrieval_metrics(torch.zeros(2, 3), torch.zeros(2, 3), [0, 1], [0, 1, 0])
