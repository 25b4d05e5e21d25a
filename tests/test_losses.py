import math

import pytest
import torch
import torch.nn.functional as F

from training.losses import (mask_tokens_for_mlm, mlm_loss, sample_hard_negatives, similarity, uta_loss, vtc_loss,
                             vtm_loss, vtm_pairs)


def test_vtc_multi_positive_matches_hand_computation():
    # videos 0 and 1 share id 0: each row's target is half on each of them.
    feats = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    idx = torch.tensor([7, 7, 3])
    loss = vtc_loss(feats, feats.clone(), temp=1.0, idx=idx)
    # sims per row: [1,1,0], [1,1,0], [0,0,1]; soft-CE = logsumexp - 1 for every row, both directions.
    row_dup = math.log(2 * math.e + 1) - 1
    row_single = math.log(2 + math.e) - 1
    expected = (2 * row_dup + row_single) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_vtc_duplicate_ids_differ_from_unique_ids():
    feats = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    dup = vtc_loss(feats, feats, 1.0, torch.tensor([0, 0, 1]))
    unique = vtc_loss(feats, feats, 1.0, torch.tensor([0, 1, 2]))
    # rows 0/1 have equal logits on columns 0 and 1, so one-hot and half/half targets give the same value here;
    # with distinct features below the soft targets must change the loss.
    assert unique.item() == pytest.approx((2 * (math.log(2 * math.e + 1) - 1) + math.log(2 + math.e) - 1) / 3)
    assert dup.item() == pytest.approx(unique.item())
    shifted = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    assert not torch.isclose(vtc_loss(shifted, shifted, 0.1, torch.tensor([0, 0, 1])),
                             vtc_loss(shifted, shifted, 0.1, torch.tensor([0, 1, 2])))


def test_similarity_averages_over_frames_and_divides_by_temp():
    v = torch.randn(3, 4, 8)
    t = torch.randn(5, 8)
    sim_v2t, sim_t2v = similarity(v, t, 0.5)
    per_frame = torch.stack([F.normalize(v[:, f], dim=-1) @ F.normalize(t, dim=-1).T for f in range(4)]).mean(0)
    torch.testing.assert_close(sim_v2t, per_frame / 0.5)
    torch.testing.assert_close(sim_t2v, sim_v2t.T)


def test_vtc_rejects_mismatched_batches():
    with pytest.raises(ValueError, match="as many videos as texts"):
        vtc_loss(torch.randn(3, 4), torch.randn(2, 4), 0.07)


def test_vtm_pairs_layout_and_labels():
    sim = torch.randn(4, 4)
    idx = torch.arange(4)
    v_i, t_i, labels = vtm_pairs(sim, idx, generator=torch.Generator().manual_seed(0))
    assert labels.tolist() == [1] * 4 + [0] * 8
    assert v_i[:4].tolist() == t_i[:4].tolist() == [0, 1, 2, 3]
    assert t_i[4:8].tolist() == [0, 1, 2, 3]  # (negative video, text)
    assert v_i[8:].tolist() == [0, 1, 2, 3]  # (video, negative text)
    assert (v_i[4:8] != t_i[4:8]).all() and (t_i[8:] != v_i[8:]).all()


def test_hard_negative_sampler_never_picks_a_positive():
    idx = torch.tensor([0, 0, 1, 1, 2, 2])
    same = idx[:, None] == idx[None, :]
    sim = torch.where(same, torch.tensor(50.0), torch.tensor(-50.0))  # positives overwhelmingly likely by sim
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        neg_text, neg_video = sample_hard_negatives(sim, idx, g)
        assert (idx[neg_text] != idx).all()
        assert (idx[neg_video] != idx).all()


def test_hard_negatives_prefer_similar_samples():
    idx = torch.arange(3)
    sim = torch.tensor([[0.0, 10.0, -10.0], [10.0, 0.0, -10.0], [10.0, -10.0, 0.0]])
    neg_text, _ = sample_hard_negatives(sim, idx, torch.Generator().manual_seed(0))
    assert neg_text.tolist() == [1, 0, 0]


def test_hard_negatives_need_another_id():
    with pytest.raises(ValueError, match="different id"):
        sample_hard_negatives(torch.randn(2, 2), torch.tensor([5, 5]))


def test_vtm_loss_is_two_way_cross_entropy():
    logits = torch.tensor([[0.0, 2.0], [1.0, 0.0]])
    labels = torch.tensor([1, 0])
    expected = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1))) / 2
    assert vtm_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)


def _ids():
    # [CLS]=101, [SEP]=102, [PAD]=0; a long batch so 80/10/10 proportions are measurable.
    body = torch.randint(1000, 2000, (64, 30))
    ids = torch.cat([torch.full((64, 1), 101), body, torch.full((64, 1), 102), torch.zeros(64, 8, dtype=torch.long)], 1)
    return ids


def test_mlm_never_masks_padding_cls_or_sep():
    ids = _ids()
    masked, labels = mask_tokens_for_mlm(ids, 30522, 103, [0, 101, 102], prob=1.0,
                                         generator=torch.Generator().manual_seed(0))
    special = (ids == 0) | (ids == 101) | (ids == 102)
    assert (labels[special] == -100).all()
    assert (masked[special] == ids[special]).all()
    assert (labels[~special] == ids[~special]).all()  # prob 1: every ordinary token is a target


def test_mlm_80_10_10_split_and_probability():
    ids = _ids()
    masked, labels = mask_tokens_for_mlm(ids, 30522, 103, [0, 101, 102], prob=0.5,
                                         generator=torch.Generator().manual_seed(1))
    chosen = labels != -100
    n_ordinary = 64 * 30
    assert abs(chosen.sum().item() / n_ordinary - 0.5) < 0.05
    frac_mask = (masked[chosen] == 103).float().mean().item()
    frac_same = (masked[chosen] == ids[chosen]).float().mean().item()
    assert abs(frac_mask - 0.8) < 0.05
    assert abs(frac_same - 0.1) < 0.04
    assert (masked[~chosen] == ids[~chosen]).all()


def test_mlm_loss_ignores_unchosen_and_handles_none_chosen():
    logits = torch.zeros(1, 3, 5, requires_grad=True)
    labels = torch.tensor([[-100, 2, -100]])
    assert mlm_loss(logits, labels).item() == pytest.approx(math.log(5))
    none = mlm_loss(logits, torch.full((1, 3), -100))
    assert none.item() == 0.0
    none.backward()


def test_uta_l2_norm_loss_values():
    s = torch.tensor([[[[1.0, 0.0]]]])
    assert uta_loss(s, s * 5).item() == pytest.approx(0.0)  # l2-normalised: scale does not matter
    assert uta_loss(s, torch.tensor([[[[0.0, 3.0]]]])).item() == pytest.approx(2.0)
    assert uta_loss(s, -s).item() == pytest.approx(4.0)


def test_uta_mse_and_smooth_l1_without_norm():
    s = torch.tensor([[[[1.0, 0.0]]]])
    t = torch.tensor([[[[3.0, 0.0]]]])
    assert uta_loss(s, t, norm_type="none", loss_type="mse").item() == pytest.approx(2.0)  # (4 + 0) / 2
    assert uta_loss(s, t, norm_type="none", loss_type="smooth_l1").item() == pytest.approx(0.75)  # (1.5 + 0) / 2
    assert uta_loss(s, t, norm_type="l2", loss_type="mse").item() == pytest.approx(0.0)


def test_uta_rejects_bad_arguments():
    with pytest.raises(ValueError, match="shapes differ"):
        uta_loss(torch.randn(1, 2, 3, 4), torch.randn(1, 2, 5, 4))
    with pytest.raises(ValueError, match="loss_type"):
        uta_loss(torch.randn(1, 1, 1, 2), torch.randn(1, 1, 1, 2), loss_type="l1")
