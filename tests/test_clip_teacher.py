import pytest
import torch
import torch.nn as nn

from encoders.clip_teacher import (CLIP_CONFIGS, ClipTeacher, ClipTeacherConfig, VideoMambaTeacher, build_teacher,
                                   clip_visual_state_dict, load_clip_teacher_weights)
from encoders.registry import create_model

TINY = ClipTeacherConfig(width=32, layers=2, heads=4, patch_size=16, image_size=32, output_dim=8)


def test_clip_b16_has_the_152_official_keys():
    sd = ClipTeacher(CLIP_CONFIGS["clip_b16"]).state_dict()
    assert len(sd) == 152
    assert sd["conv1.weight"].shape == (768, 3, 1, 16, 16)
    assert sd["positional_embedding"].shape == (197, 768)
    assert sd["proj"].shape == (768, 512)
    assert sd["transformer.resblocks.11.attn.in_proj_weight"].shape == (2304, 768)
    assert sd["transformer.resblocks.0.mlp.c_fc.weight"].shape == (3072, 768)
    assert "conv1.bias" not in sd


def test_output_layout_and_cls_averaged_over_frames():
    torch.manual_seed(0)
    teacher = ClipTeacher(TINY)
    frame = torch.randn(2, 3, 1, 32, 32)
    feats, attn = teacher(frame.expand(2, 3, 3, 32, 32))
    assert feats.shape == (1, 2, 1 + 3 * 4, 8)
    assert attn.shape == (2 * 3, 4)
    single, _ = teacher(frame)
    torch.testing.assert_close(feats[:, :, 0], single[:, :, 0])  # identical frames: averaged cls = one frame's cls
    torch.testing.assert_close(feats[:, :, 5:9], single[:, :, 1:5])
    assert ((attn > 0) & (attn < 1)).all()


def test_teacher_is_frozen_and_resizes_input():
    teacher = ClipTeacher(TINY)
    teacher.train()
    assert not teacher.training
    assert not any(p.requires_grad for p in teacher.parameters())
    feats, _ = teacher(torch.randn(1, 3, 2, 48, 48))
    assert feats.shape == (1, 1, 1 + 2 * 4, 8)
    with pytest.raises(ValueError, match=r"\(B, 3, T, H, W\)"):
        teacher(torch.randn(1, 2, 32, 32))


def test_openai_full_state_dict_with_2d_conv_loads(tmp_path):
    torch.manual_seed(0)
    source = ClipTeacher(TINY)
    sd = {"visual." + k: v.squeeze(2) if k == "conv1.weight" else v for k, v in source.state_dict().items()}
    sd["transformer.resblocks.0.attn.in_proj_weight"] = torch.randn(3, 3)  # text tower key: must be ignored
    sd["logit_scale"] = torch.tensor(1.0)
    path = tmp_path / "openai.pt"
    torch.save(sd, path)
    target = ClipTeacher(TINY)
    load_clip_teacher_weights(target, str(path))
    x = torch.randn(1, 3, 2, 32, 32)
    torch.testing.assert_close(target(x)[0], source(x)[0])


def test_hugging_face_clip_matches_transformers():
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    cfg = CLIPVisionConfig(hidden_size=32, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=16, projection_dim=8, hidden_act="quick_gelu")
    torch.manual_seed(0)
    hf = CLIPVisionModelWithProjection(cfg).eval()
    teacher = ClipTeacher(TINY)
    teacher.load_state_dict(clip_visual_state_dict(hf.state_dict()))
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = hf(pixel_values=pixels, output_hidden_states=True)
        expected = out.hidden_states[-1] @ hf.visual_projection.weight.T
    feats, _ = teacher(pixels.unsqueeze(2))
    torch.testing.assert_close(feats[0], expected, atol=1e-5, rtol=1e-4)


def test_mismatched_weights_are_named(tmp_path):
    sd = ClipTeacher(TINY).state_dict()
    del sd["proj"]
    path = tmp_path / "bad.pt"
    torch.save(sd, path)
    with pytest.raises(ValueError, match="proj"):
        load_clip_teacher_weights(ClipTeacher(TINY), str(path))
    with pytest.raises(FileNotFoundError):
        load_clip_teacher_weights(ClipTeacher(TINY), str(tmp_path / "missing.pt"))
    with pytest.raises(ValueError, match="unknown teacher"):
        build_teacher("clip_l99")


def test_videomamba_self_distillation_teacher(tmp_path):
    torch.manual_seed(0)
    small = create_model("videomamba_test_tiny")
    path = tmp_path / "small.pt"
    torch.save(small.state_dict(), path)
    teacher = build_teacher("videomamba", str(path), "videomamba_test_tiny")
    assert isinstance(teacher, VideoMambaTeacher) and teacher.output_dim == 32
    video = torch.randn(2, 3, 4, 32, 32)
    feats, saliency = teacher(video)
    assert feats.shape == (1, 2, 1 + 4 * 16, 32)
    assert saliency.shape == (8, 16)
    torch.testing.assert_close(saliency.sum(-1), torch.ones(8))
    tokens, pooled, _ = small.eval()(video)
    torch.testing.assert_close(feats[0, :, 1:], tokens)
    assert not any(p.requires_grad for p in teacher.parameters())
    assert isinstance(teacher.model, nn.Module)
