"""BiMambaMixer against a plain re-implementation: explicit causal conv, explicit recurrence, explicit flips."""
import math

import pytest
import torch
import torch.nn.functional as F

from encoders.mamba_mixer import BiMambaMixer
from encoders.scan_order import ScanPaths, temporal_first


def reference_branch(x, z, conv, x_proj, dt_proj, A_log, D):
    """One direction, step by step. x, z: (B, L, E)."""
    batch, length, inner = x.shape
    width = conv.weight.shape[-1]
    w = conv.weight[:, 0]  # (E, K)
    padded = torch.cat([x.new_zeros(batch, width - 1, inner), x], dim=1)
    xc = torch.stack([sum(padded[:, t + k] * w[:, k] for k in range(width)) for t in range(length)], dim=1)
    xc = F.silu(xc + conv.bias)
    rank, n = dt_proj.weight.shape[1], A_log.shape[1]
    dbl = xc @ x_proj.weight.T
    dt, B, C = dbl[..., :rank], dbl[..., rank:rank + n], dbl[..., rank + n:]
    delta = F.softplus(dt @ dt_proj.weight.T + dt_proj.bias)
    A = -torch.exp(A_log)
    h = x.new_zeros(batch, inner, n)
    ys = []
    for t in range(length):
        h = torch.exp(delta[:, t, :, None] * A) * h + delta[:, t, :, None] * B[:, t, None, :] * xc[:, t, :, None]
        y = (h * C[:, t, None, :]).sum(-1) + D * xc[:, t]
        ys.append(y * F.silu(z[:, t]))
    return torch.stack(ys, dim=1)


def reference_mixer(m, hidden, forward_orders=(None,), backward_orders=(None,)):
    """Official bimamba: sum of the forward branch and the flipped backward branch (both on the flipped x AND z),
    then out_proj. Extra orders are read with explicit list indexing and written back to their positions."""
    xz = hidden @ m.in_proj.weight.T
    x, z = xz.chunk(2, dim=-1)
    out = torch.zeros_like(x)
    fwd = (m.conv1d, m.x_proj, m.dt_proj, m.A_log, m.D)
    bwd = (m.conv1d_b, m.x_proj_b, m.dt_proj_b, m.A_b_log, m.D_b)
    for params, orders, reverse in ((fwd, forward_orders, False), (bwd, backward_orders, True)):
        for order in orders:
            idx = list(range(x.shape[1])) if order is None else order.tolist()
            if reverse:
                idx = idx[::-1]
            y = reference_branch(x[:, idx], z[:, idx], *params)
            for step, pos in enumerate(idx):
                out[:, pos] += y[:, step]
    return out @ m.out_proj.weight.T


def randomized_mixer(d_model=16, seed=0, **kw):
    """A mixer whose parameters are all random and distinct per branch, so any swapped or shared
    parameter shows up in the comparison."""
    torch.manual_seed(seed)
    m = BiMambaMixer(d_model, d_state=4, **kw)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.startswith("A"):
                p.copy_(torch.log(torch.rand_like(p) * 3 + 0.2))
            else:
                p.copy_(torch.randn_like(p) * (0.3 if p.dim() > 1 else 0.5))
    return m


def test_parameter_names_and_shapes_match_official():
    m = BiMambaMixer(192)  # VideoMamba-Ti block
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert list(shapes) == ["A_log", "D", "A_b_log", "D_b", "in_proj.weight", "conv1d.weight", "conv1d.bias",
                            "x_proj.weight", "dt_proj.weight", "dt_proj.bias", "conv1d_b.weight", "conv1d_b.bias",
                            "x_proj_b.weight", "dt_proj_b.weight", "dt_proj_b.bias", "out_proj.weight"]
    assert shapes["A_log"] == (384, 16) and shapes["in_proj.weight"] == (768, 192)
    assert shapes["x_proj.weight"] == (44, 384) and shapes["dt_proj.weight"] == (384, 12)
    assert shapes["conv1d.weight"] == (384, 1, 4) and shapes["out_proj.weight"] == (192, 384)


def test_official_initialisation():
    m = BiMambaMixer(64, dt_min=0.001, dt_max=0.1)
    expected_a = torch.log(torch.arange(1, 17, dtype=torch.float32)).expand(128, 16)
    assert torch.equal(m.A_log, expected_a) and torch.equal(m.A_b_log, expected_a)
    assert torch.equal(m.D, torch.ones(128)) and torch.equal(m.D_b, torch.ones(128))
    dt = F.softplus(m.dt_proj.bias)
    assert dt.min() >= 0.001 * 0.999 and dt.max() <= 0.1 * 1.001
    assert dt.std() > 0  # sampled log-uniformly, not constant


@pytest.mark.parametrize("batch,length", [(1, 9), (2, 13)])
def test_bidirectional_mixer_equals_reference(batch, length):
    m = randomized_mixer()
    h = torch.randn(batch, length, 16)
    with torch.no_grad():
        torch.testing.assert_close(m(h), reference_mixer(m, h), rtol=1e-4, atol=1e-4)


def test_backward_branch_matters_and_sum_is_not_averaged():
    m = randomized_mixer()
    h = torch.randn(1, 8, 16)
    with torch.no_grad():
        full = m(h)
        forward_only = reference_mixer(m, h, backward_orders=())
        backward_only = reference_mixer(m, h, forward_orders=())
    torch.testing.assert_close(full, forward_only + backward_only, rtol=1e-4, atol=1e-4)
    assert (full - forward_only).abs().max() > 1e-2


@pytest.mark.parametrize("chunk", [1, 3, 5, 64])
def test_chunked_inference_equals_whole_sequence(chunk):
    m = randomized_mixer()
    h = torch.randn(2, 17, 16)
    with torch.no_grad():
        whole = m(h)
        m.set_chunk_size(chunk)
        chunked = m(h)
    torch.testing.assert_close(chunked, whole, rtol=1e-4, atol=1e-4)


def test_chunked_inference_with_extra_orders():
    m = randomized_mixer()
    order = temporal_first(2, 4)
    paths = ScanPaths(forward=(None, order), backward=(None, order))
    h = torch.randn(2, order.numel(), 16)
    with torch.no_grad():
        whole = m(h, paths)
        m.set_chunk_size(4)
        chunked = m(h, paths)
        ref = reference_mixer(m, h, (None, order), (None, order))
    torch.testing.assert_close(whole, ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(chunked, whole, rtol=1e-4, atol=1e-4)


def test_chunking_is_inference_only_and_gradients_flow():
    m = randomized_mixer()
    m.set_chunk_size(4)
    h = torch.randn(1, 10, 16, requires_grad=True)
    m(h).square().sum().backward()
    assert h.grad is not None and all(p.grad is not None for p in m.parameters())
    assert m.A_b_log.grad.abs().sum() > 0 and m.conv1d_b.weight.grad.abs().sum() > 0


def test_bf16_autocast_close_to_fp32():
    m = randomized_mixer()
    h = torch.randn(1, 12, 16)
    with torch.no_grad():
        ref = m(h)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = m(h)
    assert low.dtype == torch.bfloat16
    assert (low.float() - ref).abs().max() / ref.abs().max() < 5e-2


def test_bad_input_is_named():
    m = BiMambaMixer(16)
    with pytest.raises(ValueError, match=r"\(B, L, 16\)"):
        m(torch.randn(2, 5, 8))
    with pytest.raises(ValueError, match="chunk_size"):
        m.set_chunk_size(0)
    assert math.isclose(m.dt_rank, 1)


def test_chunked_bf16_autocast_close_to_whole_sequence():
    m = randomized_mixer()
    h = torch.randn(1, 11, 16)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        whole = m(h)
        m.set_chunk_size(4)
        chunked = m(h)
    assert chunked.dtype == whole.dtype
    assert (chunked.float() - whole.float()).abs().max() / whole.float().abs().max() < 5e-2
