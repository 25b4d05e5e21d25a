import pytest
import torch

from training.masking import MASK_TYPES, attention_mask, make_mask


@pytest.mark.parametrize("kind", [k for k in MASK_TYPES if k != "attention"])
def test_layout_cls_visible_and_constant_count(kind):
    B, T, H, W = 3, 4, 4, 5
    mask = make_mask(kind, B, T, (H, W), 0.5, generator=torch.Generator().manual_seed(0))
    assert mask.shape == (B, 1 + T * H * W) and mask.dtype == torch.bool
    assert not mask[:, 0].any()
    hidden = mask.sum(1)
    assert (hidden == hidden[0]).all() and 0 < hidden[0] < T * H * W


def test_random_count():
    mask = make_mask("random", 2, 4, (4, 4), 0.75, generator=torch.Generator().manual_seed(0))
    assert mask.sum(1).tolist() == [48, 48]


def test_tube_repeats_the_spatial_mask_over_frames():
    mask = make_mask("tube", 2, 3, (4, 4), 0.5, generator=torch.Generator().manual_seed(0))[:, 1:].view(2, 3, 16)
    assert (mask == mask[:, :1]).all()
    assert mask[:, 0].sum(1).tolist() == [8, 8]


def test_tube_row_hides_whole_rows_per_frame():
    H, W = 4, 5
    mask = make_mask("tube_row", 2, 3, (H, W), 0.5, generator=torch.Generator().manual_seed(0))[:, 1:]
    rows = mask.view(2, 3, H, W)
    assert ((rows.all(-1)) | (~rows).all(-1)).all()  # each row fully hidden or fully visible
    assert (rows.all(-1).sum(-1) == 2).all()  # int(0.5 * 4) rows per frame


def test_random_row_hides_rows_over_the_clip():
    H, W, T = 4, 5, 3
    mask = make_mask("random_row", 2, T, (H, W), 0.5, generator=torch.Generator().manual_seed(0))[:, 1:]
    rows = mask.view(2, T * H, W)
    assert ((rows.all(-1)) | (~rows).all(-1)).all()
    assert rows.all(-1).sum(-1).tolist() == [T * 2, T * 2]


def test_attention_keeps_the_attended_patches():
    B, T, N = 2, 3, 16
    attn = torch.zeros(B * T, N)
    keep = torch.stack([torch.randperm(N)[:4] for _ in range(B * T)])
    attn.scatter_(1, keep, 1.0)
    mask = attention_mask(attn, B, T, ratio=0.75, generator=torch.Generator().manual_seed(0))
    assert mask.shape == (B, 1 + T * N) and not mask[:, 0].any()
    visible = ~mask[:, 1:].reshape(B * T, N)
    assert (visible.sum(1) == 4).all()
    assert visible.gather(1, keep).all()


def test_attention_sampling_is_random_but_biased():
    attn = torch.linspace(0.01, 1.0, 16).repeat(200, 1)
    visible = ~attention_mask(attn, 200, 1, 0.75, torch.Generator().manual_seed(0))[:, 1:]
    counts = visible.float().sum(0)
    assert counts[-4:].sum() > 2 * counts[:4].sum()
    assert counts[:8].sum() > 0


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="mask ratio"):
        make_mask("random", 1, 1, (2, 2), 1.0)
    with pytest.raises(ValueError, match="unknown mask type"):
        make_mask("blocks", 1, 1, (2, 2), 0.5)
    with pytest.raises(ValueError, match="cls attention"):
        make_mask("attention", 1, 1, (2, 2), 0.5)
    with pytest.raises(ValueError, match="cls_attn must be"):
        attention_mask(torch.rand(3, 4), 2, 1, 0.5)


def test_masks_follow_the_requested_device():
    mask = make_mask("tube", 1, 2, (2, 2), 0.5, device=torch.device("cpu"))
    assert mask.device.type == "cpu"
