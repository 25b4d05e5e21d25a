"""Scan orders: exact permutations, round trips, and the model under each order against explicit references."""
import pytest
import torch

from encoders import create_model
from encoders.scan_order import (SCAN_ORDERS, gather_along, invert, make_plan, restrict, scatter_along,
                                 spatial_first, temporal_first)
from test_videomamba import randomized, reference_blocks, reference_embed


def test_orders_on_a_small_grid():
    # T=2 frames of N=3 patches; canonical position of (t, p) is 1 + 3t + p.
    assert spatial_first(2, 3).tolist() == [0, 1, 2, 3, 4, 5, 6]
    assert temporal_first(2, 3).tolist() == [0, 1, 4, 2, 5, 3, 6]


@pytest.mark.parametrize("frames,patches", [(1, 4), (3, 5), (8, 16)])
def test_orders_are_permutations_with_cls_first(frames, patches):
    for order in (spatial_first(frames, patches), temporal_first(frames, patches)):
        assert order[0] == 0
        assert torch.equal(order.sort().values, torch.arange(1 + frames * patches))
        assert torch.equal(order[invert(order)], torch.arange(order.numel()))


@pytest.mark.parametrize("dim", [1, -1])
def test_gather_scatter_round_trip(dim):
    x = torch.randn(2, 13, 5) if dim == 1 else torch.randn(2, 5, 13)
    shared = temporal_first(3, 4)
    per_sample = torch.stack([torch.randperm(13), torch.randperm(13)])
    for index in (shared, per_sample):
        y = gather_along(x, index, dim)
        assert torch.equal(scatter_along(y, index, dim), x)
    y = gather_along(x, shared, dim)
    assert torch.equal(y.select(dim, 1), x.select(dim, 1)) and torch.equal(y.select(dim, 2), x.select(dim, 5))


def test_restrict_to_visible_tokens_keeps_relative_order():
    order = temporal_first(2, 3)  # [0, 1, 4, 2, 5, 3, 6]
    positions = torch.tensor([[0, 2, 3, 4], [0, 1, 5, 6]])
    sub = restrict(order, positions)
    read = torch.gather(positions, 1, sub)
    assert read.tolist() == [[0, 4, 2, 3], [0, 1, 5, 6]]


def test_spatial_first_is_the_plain_official_layout():
    plan = make_plan("spatial_first", 4, 9)
    assert plan.layout is None and plan.paths is None
    model = randomized(create_model("videomamba_test_tiny", embed_dim=16, img_size=16, num_frames=2,
                                    ssm_cfg={"d_state": 4}))
    video = torch.randn(1, 3, 2, 16, 16)
    with torch.no_grad():
        tokens, _ = reference_embed(model, video)
        torch.testing.assert_close(model.embed(video)[0], tokens)
        ref = reference_blocks(model, tokens)[0]
        torch.testing.assert_close(model(video)[0], ref[:, 1:], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["temporal_first", "spatiotemporal_v1", "spatiotemporal_v2"])
@pytest.mark.parametrize("masked", [False, True])
def test_model_under_each_order_equals_explicit_reference(name, masked):
    model = randomized(create_model("videomamba_test_tiny", embed_dim=16, img_size=16, num_frames=2,
                                    ssm_cfg={"d_state": 4}, scan_order=name))
    video = torch.randn(2, 3, 2, 16, 16)
    mask = None
    if masked:
        mask = torch.zeros(2, 9, dtype=torch.bool)
        mask[0, [1, 2, 7, 8]] = True
        mask[1, [3, 4, 5, 6]] = True
    with torch.no_grad():
        x_vis, pooled, _ = model(video, mask=mask, keep_temporal=not masked)
        tokens, _ = reference_embed(model, video)
        tf = temporal_first(2, 4).tolist()
        if mask is not None:
            kept = [[p for p in range(9) if not mask[b, p]] for b in range(2)]
            tokens = torch.stack([tokens[b, kept[b]] for b in range(2)])
        else:
            kept = [list(range(9))] * 2
        outs = []
        for b in range(2):
            # the temporal-first reading order restricted to this sample's kept tokens, as indices into them
            tf_local = torch.tensor([kept[b].index(p) for p in tf if p in kept[b]])
            seq = tokens[b:b + 1]
            if name == "temporal_first":
                out = reference_blocks(model, seq[:, tf_local])[0]
                out = out[:, invert(tf_local)]
            elif name == "spatiotemporal_v1":
                out = reference_blocks(model, seq, ((None,), (tf_local,)))[0]
            else:
                out = reference_blocks(model, seq, ((None, tf_local), (None, tf_local)))[0]
            outs.append(out)
        ref = torch.cat(outs)
    torch.testing.assert_close(x_vis, ref[:, 1:], rtol=1e-4, atol=1e-4)
    cls_plus_mean = ref[:, :1] + (ref[:, 1:].reshape(2, 2, -1, 16).mean(2) if not masked else ref[:, 1:].mean(1, True))
    ln = torch.nn.functional.layer_norm(cls_plus_mean, (16,), model.pool_norm.weight, model.pool_norm.bias)
    torch.testing.assert_close(pooled, ln, rtol=1e-4, atol=1e-4)


def test_orders_change_the_output_but_not_the_layout():
    video = torch.randn(1, 3, 2, 16, 16)
    outs = {}
    for name in SCAN_ORDERS:
        model = randomized(create_model("videomamba_test_tiny", embed_dim=16, img_size=16, num_frames=2,
                                        ssm_cfg={"d_state": 4}, scan_order=name))
        with torch.no_grad():
            outs[name] = model(video)[0]
    assert all(o.shape == (1, 8, 16) for o in outs.values())
    assert all((outs[n] - outs["spatial_first"]).abs().max() > 1e-3 for n in SCAN_ORDERS[1:])


def test_unknown_order_is_named():
    with pytest.raises(ValueError, match="zigzag"):
        make_plan("zigzag", 2, 4)
