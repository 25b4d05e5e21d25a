"""VideoMamba against a plain composition: official-style embedding (per-frame cls, einops-like reshapes),
an explicit loop over blocks with the add -> RMSNorm -> mixer structure, and the reference mixer."""
import pytest
import torch
import torch.nn.functional as F

from encoders import create_model, list_models
from encoders.videomamba import VideoMamba, VideoMambaConfig, sinusoid_table
from test_mixer import reference_mixer


def rms(x, w, eps=1e-5):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def reference_embed(model, video):
    """The official forward_features token construction, step by step."""
    x = model.patch_embed.proj(video)  # (B, D, T, h, w)
    B, D, T, h, w = x.shape
    x = x.permute(0, 2, 3, 4, 1).reshape(B * T, h * w, D)
    x = torch.cat([model.cls_token.expand(B * T, -1, -1), x], dim=1) + model.pos_embed
    cls = x[:B, :1]
    x = x[:, 1:].reshape(B, T, h * w, D).permute(0, 2, 1, 3).reshape(B * h * w, T, D)  # (b n) t m
    x = x + model.temporal_pos_embedding
    x = x.reshape(B, h * w, T, D).permute(0, 2, 1, 3).reshape(B, T * h * w, D)  # b (t n) m
    return torch.cat([cls, x], dim=1), T


def reference_blocks(model, x, orders=None):
    """Explicit loop: residual += hidden; hidden = RMSNorm(residual); hidden = mixer(hidden). Returns the final
    normed tokens and the residual before the last mixer's output is added (the UTA student feature)."""
    fwd, bwd = orders or ((None,), (None,))
    residual, hidden = None, x
    for layer in model.layers:
        residual = hidden if residual is None else residual + hidden
        hidden = reference_mixer(layer.mixer, rms(residual, layer.norm.weight), fwd, bwd)
    return rms(residual + hidden, model.norm.weight), residual


def reference_forward(model, video, mask=None, keep_temporal=False):
    tokens, T = reference_embed(model, video)
    if mask is not None:
        tokens = torch.stack([tokens[b][~mask[b]] for b in range(tokens.shape[0])])
    out, student = reference_blocks(model, tokens)
    cls, patches = out[:, :1], out[:, 1:]
    if keep_temporal:
        pooled = cls + patches.reshape(patches.shape[0], T, -1, patches.shape[-1]).mean(2)
    else:
        pooled = cls + patches.mean(1, keepdim=True)
    return patches, F.layer_norm(pooled, pooled.shape[-1:], model.pool_norm.weight, model.pool_norm.bias), student


def randomized(model, seed=0):
    """Give every parameter (incl. zero-initialised embeddings and A) random values."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "A_" in name:
                p.copy_(torch.log(torch.rand_like(p) * 3 + 0.2))
            else:
                p.copy_(torch.randn_like(p) * (0.2 if p.dim() > 1 else 0.5) + (1.0 if name.endswith("norm.weight") else 0))
    return model.eval()


@pytest.fixture(scope="module")
def tiny():
    return randomized(create_model("videomamba_test_tiny", embed_dim=16, depth=2, img_size=16, num_frames=2,
                                   ssm_cfg={"d_state": 4}))


@pytest.mark.parametrize("keep_temporal", [False, True])
def test_forward_equals_reference_composition(tiny, keep_temporal):
    video = torch.randn(2, 3, 2, 16, 16)
    with torch.no_grad():
        x_vis, pooled, x_clip = tiny(video, keep_temporal=keep_temporal)
        ref_vis, ref_pooled, _ = reference_forward(tiny, video, keep_temporal=keep_temporal)
    assert x_vis.shape == (2, 8, 16) and x_clip is None
    assert pooled.shape == ((2, 2, 16) if keep_temporal else (2, 1, 16))
    torch.testing.assert_close(x_vis, ref_vis, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(pooled, ref_pooled, rtol=1e-4, atol=1e-4)


def test_masked_forward_equals_reference(tiny):
    video = torch.randn(2, 3, 2, 16, 16)
    mask = torch.zeros(2, 9, dtype=torch.bool)
    mask[0, [1, 4, 6, 7]] = True
    mask[1, [2, 3, 5, 8]] = True
    with torch.no_grad():
        x_vis, pooled, x_clip = tiny(video, mask=mask)
        ref_vis, ref_pooled, student = reference_forward(tiny, video, mask=mask)
        table = sinusoid_table(9, 16).expand(2, -1, -1)[~mask].view(2, 5, 16)
        ref_clip = tiny.clip_decoder[0](student + table)
    assert x_vis.shape == (2, 4, 16) and x_clip.shape == (1, 2, 5, 512)
    torch.testing.assert_close(x_vis, ref_vis, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(pooled, ref_pooled, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(x_clip[0], ref_clip, rtol=1e-4, atol=1e-4)


def test_single_image_skips_temporal_embedding(tiny):
    image = torch.randn(1, 3, 1, 16, 16)
    with torch.no_grad():
        x_vis, pooled, _ = tiny(image, use_image=True)
        tokens = tiny.patch_embed.proj(image).flatten(2).transpose(1, 2) + tiny.pos_embed[:, 1:]
        tokens = torch.cat([tiny.cls_token + tiny.pos_embed[:, :1], tokens], dim=1)
        ref = reference_blocks(tiny, tokens)[0]
    torch.testing.assert_close(x_vis, ref[:, 1:], rtol=1e-4, atol=1e-4)


def test_sinusoid_table_is_the_transformer_table():
    table = sinusoid_table(5, 6)[0]
    pos, i = 3, 4
    assert torch.isclose(table[pos, i], torch.sin(torch.tensor(pos / 10000 ** (i / 6))))
    assert torch.isclose(table[pos, i + 1], torch.cos(torch.tensor(pos / 10000 ** (i / 6))))


def test_clip_tables_not_in_state_dict(tiny):
    keys = tiny.state_dict().keys()
    assert not any("clip_pos_embed" in k or "clip_img_pos_embed" in k for k in keys)
    assert tiny.clip_pos_embed.shape == (1, 1 + 2 * 4, 16)


def test_drop_path_schedule_is_linear_and_shifted():
    m = VideoMamba(VideoMambaConfig(embed_dim=16, depth=4, img_size=16, patch_size=8, num_frames=2,
                                    drop_path_rate=0.3))
    rates = [layer.drop_path.p for layer in m.layers]
    dpr = torch.linspace(0, 0.3, 4).tolist()
    assert rates == [0.0] + dpr[:3] and m.drop_path.p == pytest.approx(0.3)


def test_gradient_checkpointing_gives_same_gradients():
    torch.manual_seed(0)
    plain = create_model("videomamba_test_tiny", embed_dim=16, img_size=16, num_frames=2)
    ckpt = create_model("videomamba_test_tiny", embed_dim=16, img_size=16, num_frames=2, use_checkpoint=True,
                        checkpoint_num=2)
    ckpt.load_state_dict(plain.state_dict())
    video = torch.randn(1, 3, 2, 16, 16)
    for m in (plain, ckpt):
        _, pooled, _ = m(video)
        pooled.sum().backward()
    for (name, a), b in zip(plain.named_parameters(), ckpt.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-6, msg=name)


def test_registered_sizes():
    assert {"videomamba_tiny", "videomamba_small", "videomamba_middle", "videomamba_base",
            "videomamba_test_tiny"} <= set(list_models("videomamba"))
    ti = create_model("videomamba_tiny")
    assert len(ti.state_dict()) == 420
    assert sum(p.numel() for p in ti.parameters()) == pytest.approx(7.06e6, rel=2e-3)
    small = create_model("videomamba_test_tiny", img_size=64, patch_size=16)
    assert small.pos_embed.shape == (1, 17, 32)


def test_bad_inputs_are_named(tiny):
    with pytest.raises(ValueError, match="16x16"):
        tiny(torch.randn(1, 3, 2, 32, 32))
    with pytest.raises(ValueError, match="num_frames=8"):
        tiny(torch.randn(1, 3, 8, 16, 16))
    with pytest.raises(TypeError, match="bool"):
        tiny(torch.randn(1, 3, 2, 16, 16), mask=torch.zeros(1, 9))
    with pytest.raises(ValueError, match="cls"):
        tiny(torch.randn(1, 3, 2, 16, 16), mask=torch.ones(1, 9, dtype=torch.bool))
    with pytest.raises(ValueError, match="shape"):
        tiny(torch.randn(1, 3, 2, 16, 16), mask=torch.zeros(1, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match="scan_order"):
        VideoMambaConfig(scan_order="zigzag")
    with pytest.raises(TypeError):
        VideoMambaConfig(no_such_option=1)
