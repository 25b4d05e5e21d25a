"""The channels-last CPU inference kernels against their plain references, and the mixer path that uses them."""
import pytest
import torch
import torch.nn.functional as F

import encoders.mamba_mixer as mamba_mixer
from encoders.mamba_mixer import BiMambaMixer
from encoders.ops.scan_channels_last import (
    channels_last_usable,
    conv_silu_channels_last,
    conv_silu_channels_last_ref,
    scan_channels_last,
    scan_channels_last_ref,
)
from encoders.ops.selective_scan import last_backend

TOL = dict(rtol=1e-5, atol=1e-5)


def rows(batch, length, dim, stride_dim=None, seed=0):
    """(batch, length, dim) rows; with stride_dim, a view into wider rows (like x and z inside in_proj's output)."""
    g = torch.Generator().manual_seed(seed)
    wide = torch.randn(batch, length, stride_dim or dim, generator=g)
    return wide[..., :dim] if stride_dim else wide


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("length", [1, 3, 37])
@pytest.mark.parametrize("bias", [True, False])
def test_conv_silu_equals_reference(reverse, length, bias):
    x = rows(2, length, 40, stride_dim=88)  # 40 channels: two full vectors and a partial one at AVX-512 width
    weight = torch.randn(40, 4)
    b = torch.randn(40) if bias else None
    got = conv_silu_channels_last(x, weight, b, reverse)
    assert got.is_contiguous()
    torch.testing.assert_close(got, conv_silu_channels_last_ref(x, weight, b, reverse), **TOL)
    buffer = torch.full_like(got, float("nan"))
    assert conv_silu_channels_last(x, weight, b, reverse, out=buffer) is not None
    torch.testing.assert_close(buffer, got, rtol=0, atol=0)


def scan_inputs(batch=2, length=37, dim=40, nstate=16, rank=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    u = rows(batch, length, dim, seed=seed)
    dt_weight = torch.randn(dim, rank, generator=g)
    A = -torch.rand(dim, nstate, generator=g) * 4 - 0.1
    x_dbl = torch.randn(batch, length, rank + 2 * nstate, generator=g)
    z = rows(batch, length, dim, stride_dim=2 * dim, seed=seed + 1)
    D = torch.randn(dim, generator=g)
    bias = torch.randn(dim, generator=g)
    return dict(u=u, dt_weight=dt_weight, A=A, x_dbl=x_dbl, z=z, D=D, delta_bias=bias)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("nstate", [16, 5])
@pytest.mark.parametrize("softplus", [True, False])
def test_scan_equals_reference(reverse, nstate, softplus):
    args = scan_inputs(nstate=nstate)
    if not softplus:  # steps must already be positive
        args["x_dbl"][..., :3] = args["x_dbl"][..., :3].abs()
        args["dt_weight"] = args["dt_weight"].abs() * 0.1
        args["delta_bias"] = args["delta_bias"].abs() * 0.1
    got = scan_channels_last(**args, delta_softplus=softplus, reverse=reverse)
    torch.testing.assert_close(got, scan_channels_last_ref(**args, delta_softplus=softplus, reverse=reverse), **TOL)


def test_scan_without_gate_skip_or_bias_and_length_one():
    for length in (1, 20):
        args = scan_inputs(length=length, dim=17)
        args.update(z=None, D=None, delta_bias=None)
        torch.testing.assert_close(scan_channels_last(**args), scan_channels_last_ref(**args), **TOL)


def test_scan_adds_into_out_in_place():
    args = scan_inputs()
    first = scan_channels_last(**args)
    both = scan_channels_last(**args, reverse=True, out=first.clone())
    expected = scan_channels_last_ref(**args) + scan_channels_last_ref(**args, reverse=True)
    torch.testing.assert_close(both, expected, **TOL)


def test_softplus_matches_torch_over_its_range():
    """dt = softplus(W dtr + bias): the kernel's own log1p/exp against torch's, from deep negative to the linear
    branch above 20, one value per channel (as its bias) of a one-step scan with u = B = C = 1, so y = dt."""
    delta = torch.linspace(-30, 40, 4001)
    x_dbl = torch.tensor([[[0.0, 1.0, 1.0]]])  # low-rank dt 0, B = C = 1
    got = scan_channels_last(torch.ones(1, 1, 4001), torch.ones(4001, 1), -torch.ones(4001, 1), x_dbl,
                             delta_bias=delta)
    torch.testing.assert_close(got.flatten(), F.softplus(delta), rtol=2e-6, atol=1e-30)


def test_bad_inputs_are_named():
    args = scan_inputs()
    with pytest.raises(RuntimeError, match="x_dbl must be"):
        scan_channels_last(**{**args, "x_dbl": args["x_dbl"][..., :10]})
    with pytest.raises(RuntimeError, match="x_dbl must be float32"):
        scan_channels_last(**{**args, "x_dbl": args["x_dbl"].double()})
    with pytest.raises(RuntimeError, match="dt_weight must be"):
        scan_channels_last(**{**args, "dt_weight": args["dt_weight"][:5]})


def randomized_mixer(d_model, d_state, seed=0):
    torch.manual_seed(seed)
    m = BiMambaMixer(d_model, d_state=d_state)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.startswith("A"):
                p.copy_(torch.log(torch.rand_like(p) * 3 + 0.2))
            else:
                p.add_(torch.randn_like(p) * 0.05)
    return m.eval()


@pytest.fixture
def count_channels_last(monkeypatch):
    calls = []
    real = mamba_mixer.scan_channels_last

    def counted(*args, **kwargs):
        calls.append(kwargs.get("reverse"))
        return real(*args, **kwargs)

    monkeypatch.setattr(mamba_mixer, "scan_channels_last", counted)
    return calls


def test_mixer_inference_uses_it_and_equals_the_reference_scan(count_channels_last, monkeypatch):
    """A VideoMamba-Ti-width mixer: the channels-last path against the (B, channels, L) path run on mamba-ssm's
    sequential reference scan (what the official code runs on CPU)."""
    m = randomized_mixer(192, 16)
    h = torch.randn(2, 50, 192)
    with torch.no_grad():
        fast = m(h)
        assert count_channels_last == [False, True] and last_backend() == "cpp"
        monkeypatch.setenv("VIDEOMAMBA_SCAN_BACKEND", "ref")
        reference = m(h)
    assert len(count_channels_last) == 2  # the forced reference backend does not take the channels-last path
    torch.testing.assert_close(fast, reference, **TOL)


def test_training_autocast_and_other_backends_keep_the_scan_path(count_channels_last, monkeypatch):
    m = randomized_mixer(32, 4)
    h = torch.randn(1, 9, 32)
    assert channels_last_usable(h) is False  # grad is on outside no_grad
    m(h).sum().backward()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        m(h)
    with torch.no_grad():
        monkeypatch.setenv("VIDEOMAMBA_SCAN_BACKEND", "torch")
        m(h)
        assert channels_last_usable(h) is False
        monkeypatch.delenv("VIDEOMAMBA_SCAN_BACKEND")
        assert channels_last_usable(h) is True and channels_last_usable(h.double()) is False
    assert count_channels_last == []
