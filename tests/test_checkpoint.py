"""Checkpoint loading: official key names/shapes in every layout, strict errors, interpolation, safetensors."""
import pytest
import torch

from encoders import create_model
from encoders.checkpoint import checkpoint_filter_fn, load_checkpoint, save_safetensors

SIZES = {"tiny": (192, 24), "small": (384, 24), "middle": (576, 32)}


def official_vision_keys(dim, depth, frames=8, grid=14, heads=True):
    """The vision-encoder state dict of the official PretrainVideoMamba (reference §1.5), names and shapes."""
    inner, rank = 2 * dim, -(-dim // 16)
    shapes = {"cls_token": (1, 1, dim), "pos_embed": (1, 1 + grid * grid, dim),
              "temporal_pos_embedding": (1, frames, dim), "patch_embed.proj.weight": (dim, 3, 1, 16, 16),
              "patch_embed.proj.bias": (dim,)}
    for i in range(depth):
        p = f"layers.{i}.mixer."
        shapes.update({p + "A_log": (inner, 16), p + "D": (inner,), p + "A_b_log": (inner, 16), p + "D_b": (inner,),
                       p + "in_proj.weight": (2 * inner, dim), p + "conv1d.weight": (inner, 1, 4),
                       p + "conv1d.bias": (inner,), p + "x_proj.weight": (rank + 32, inner),
                       p + "dt_proj.weight": (inner, rank), p + "dt_proj.bias": (inner,),
                       p + "conv1d_b.weight": (inner, 1, 4), p + "conv1d_b.bias": (inner,),
                       p + "x_proj_b.weight": (rank + 32, inner), p + "dt_proj_b.weight": (inner, rank),
                       p + "dt_proj_b.bias": (inner,), p + "out_proj.weight": (dim, inner),
                       f"layers.{i}.norm.weight": (dim,)})
    shapes["norm.weight"] = (dim,)
    if heads:
        shapes.update({"clip_decoder.0.head.weight": (512, dim), "clip_decoder.0.head.bias": (512,),
                       "clip_decoder.0.norm.weight": (512,), "clip_decoder.0.norm.bias": (512,),
                       "pool_norm.weight": (dim,), "pool_norm.bias": (dim,)})
    return shapes


def random_state(shapes, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(s, generator=g) for k, s in shapes.items()}


@pytest.mark.parametrize("size,count", [("tiny", 420), ("small", 420), ("middle", 556)])
def test_model_keys_equal_official_keys(size, count):
    model = create_model(f"videomamba_{size}")
    official = official_vision_keys(*SIZES[size])
    assert len(official) == count
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == official


def _layouts(sd):
    multimodal = {f"vision_encoder.{k}": v for k, v in sd.items()}
    multimodal.update({"clip_teacher.class_embedding": torch.zeros(768), "text_encoder.bert.embeddings.position_ids":
                       torch.arange(512)[None], "text_encoder.cls.predictions.bias": torch.zeros(30522),
                       "vision_proj.weight": torch.zeros(512, 192), "vision_proj.bias": torch.zeros(512),
                       "text_proj.weight": torch.zeros(512, 768), "itm_head.weight": torch.zeros(2, 768),
                       "temp": torch.tensor(0.07)})
    return {"raw": sd, "model": {"model": sd, "epoch": 3}, "module": {"module": sd},
            "ddp_prefix": {f"module.{k}": v for k, v in sd.items()}, "multimodal": {"model": multimodal}}


@pytest.mark.parametrize("layout", ["raw", "model", "module", "ddp_prefix", "multimodal"])
def test_full_layouts_load_strictly(tmp_path, layout):
    sd = random_state(official_vision_keys(192, 24))
    path = tmp_path / "ckpt.pth"
    torch.save(_layouts(sd)[layout], path)
    model = create_model("videomamba_tiny")
    report = load_checkpoint(model, path)
    assert report == {"missing": [], "unexpected": []}
    own = model.state_dict()
    assert len(own) == 420 and all(torch.equal(own[k], v) for k, v in sd.items())


def test_masked_pretraining_layout_needs_declared_pool_norm(tmp_path):
    shapes = official_vision_keys(192, 24)
    del shapes["pool_norm.weight"], shapes["pool_norm.bias"]
    sd = random_state(shapes)
    torch.save({"model": sd}, tmp_path / "mask_pt.pth")
    with pytest.raises(ValueError, match=r"pool_norm\.weight.*new_heads=\('pool_norm',\)"):
        load_checkpoint(create_model("videomamba_tiny"), tmp_path / "mask_pt.pth")
    fresh = create_model("videomamba_tiny")
    init = fresh.pool_norm.weight.clone()
    report = load_checkpoint(fresh, tmp_path / "mask_pt.pth", new_heads=("pool_norm",))
    assert report["missing"] == ["pool_norm.weight", "pool_norm.bias"]
    assert torch.equal(fresh.pool_norm.weight, init)
    assert torch.equal(fresh.clip_decoder[0].head.weight, sd["clip_decoder.0.head.weight"])
    load_checkpoint(create_model("videomamba_tiny", add_pool_norm=False), tmp_path / "mask_pt.pth")


def test_classification_layout(tmp_path):
    shapes = official_vision_keys(192, 24, heads=False)
    shapes["norm_f.weight"] = shapes.pop("norm.weight")
    shapes.update({"head.weight": (400, 192), "head.bias": (400,)})
    sd = random_state(shapes)
    torch.save({"model": sd}, tmp_path / "k400.pth")
    model = create_model("videomamba_tiny", add_pool_norm=False, clip_return_layer=0)
    assert load_checkpoint(model, tmp_path / "k400.pth") == {"missing": [], "unexpected": []}
    assert torch.equal(model.norm.weight, sd["norm_f.weight"])
    with pytest.raises(ValueError, match="clip_decoder/pool_norm"):
        load_checkpoint(create_model("videomamba_tiny"), tmp_path / "k400.pth")
    load_checkpoint(create_model("videomamba_tiny"), tmp_path / "k400.pth", new_heads=("pool_norm", "clip_decoder"))


def test_imagenet_2d_layout_is_inflated(tmp_path):
    shapes = official_vision_keys(192, 24, heads=False)
    shapes["norm_f.weight"] = shapes.pop("norm.weight")
    shapes["patch_embed.proj.weight"] = (192, 3, 16, 16)
    del shapes["temporal_pos_embedding"]
    shapes.update({"head.weight": (1000, 192), "head.bias": (1000,)})
    sd = random_state(shapes)
    torch.save(sd, tmp_path / "in1k.pth")
    model = create_model("videomamba_tiny", add_pool_norm=False, clip_return_layer=0)
    load_checkpoint(model, tmp_path / "in1k.pth")
    assert model.patch_embed.proj.weight.shape == (192, 3, 1, 16, 16)
    assert torch.equal(model.patch_embed.proj.weight[:, :, 0], sd["patch_embed.proj.weight"])
    assert torch.count_nonzero(model.temporal_pos_embedding) == 0
    tubelet = create_model("videomamba_test_tiny", embed_dim=192, depth=24, img_size=224, patch_size=16,
                           kernel_size=2, add_pool_norm=False, clip_return_layer=0)
    load_checkpoint(tubelet, tmp_path / "in1k.pth")
    w = tubelet.patch_embed.proj.weight
    assert torch.equal(w[:, :, 1], sd["patch_embed.proj.weight"]) and torch.count_nonzero(w[:, :, 0]) == 0


def test_frames_and_resolution_are_interpolated(tmp_path):
    sd = random_state(official_vision_keys(192, 24))
    torch.save(sd, tmp_path / "f8.pth")
    model = create_model("videomamba_tiny", num_frames=16, img_size=64)
    load_checkpoint(model, tmp_path / "f8.pth")
    t_old, t_new = sd["temporal_pos_embedding"], model.temporal_pos_embedding.detach()
    assert t_new.shape == (1, 16, 192)
    torch.testing.assert_close(t_new[:, 0], t_old[:, 0])
    torch.testing.assert_close(t_new[:, -1], t_old[:, -1])
    torch.testing.assert_close(t_new[:, 1], 0.75 * t_old[:, 0] + 0.25 * t_old[:, 1])  # linear in between
    pos = model.pos_embed.detach()
    assert pos.shape == (1, 17, 192) and torch.equal(pos[:, 0], sd["pos_embed"][:, 0])
    grid = sd["pos_embed"][0, 1:].reshape(1, 14, 14, 192).permute(0, 3, 1, 2)
    expected = torch.nn.functional.interpolate(grid, size=(4, 4), mode="bicubic", align_corners=False)
    torch.testing.assert_close(pos[0, 1:], expected[0].permute(1, 2, 0).reshape(16, 192))


def test_interpolated_checkpoint_runs(tmp_path):
    save_safetensors(create_model("videomamba_test_tiny"), tmp_path / "f4.safetensors")
    model = create_model("videomamba_test_tiny", num_frames=8, img_size=64, pretrained=str(tmp_path / "f4.safetensors"))
    with torch.no_grad():
        x_vis, pooled, _ = model(torch.randn(1, 3, 8, 64, 64), keep_temporal=True)
    assert x_vis.shape == (1, 8 * 64, 32) and pooled.shape == (1, 8, 32)


def test_error_lists_missing_and_unexpected_keys(tmp_path):
    sd = random_state(official_vision_keys(192, 24))
    del sd["layers.3.mixer.D_b"]
    sd["layers.3.mixer.in_proj_b.weight"] = torch.zeros(2)
    sd["layers.0.norm.weight"] = torch.zeros(7)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(ValueError) as err:
        load_checkpoint(create_model("videomamba_tiny"), tmp_path / "bad.pth")
    msg = str(err.value)
    assert "1 missing keys ['layers.3.mixer.D_b']" in msg
    assert "1 unexpected keys ['layers.3.mixer.in_proj_b.weight']" in msg
    assert "layers.0.norm.weight: checkpoint (7,) vs model (192,)" in msg
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        load_checkpoint(create_model("videomamba_test_tiny"), tmp_path / "nowhere.pth")


def test_pickled_objects_are_refused(tmp_path):
    model = create_model("videomamba_test_tiny")
    torch.save({"model": model.state_dict(), "config": _Config()}, tmp_path / "obj.pth")
    with pytest.raises(ValueError, match="weights_only"):
        load_checkpoint(model, tmp_path / "obj.pth")


class _Config:
    lr = 1e-4


def test_safetensors_round_trip_and_create_model(tmp_path):
    torch.manual_seed(0)
    model = create_model("videomamba_test_tiny").eval()
    with torch.no_grad():
        model.temporal_pos_embedding.normal_()
    save_safetensors(model, tmp_path / "tiny.safetensors")
    loaded = create_model("videomamba_test_tiny", pretrained=str(tmp_path / "tiny.safetensors")).eval()
    video = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(video)[1], model(video)[1], rtol=0, atol=0)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "tiny.safetensors"), "pt") as f:
        assert '"embed_dim": 32' in f.metadata()["config"]


def test_filter_is_usable_on_an_in_memory_state_dict():
    model = create_model("videomamba_test_tiny", num_frames=8)
    sd = create_model("videomamba_test_tiny").state_dict()
    out = checkpoint_filter_fn({"module": sd}, model)
    assert out["temporal_pos_embedding"].shape == (1, 8, 32) and out.keys() == sd.keys()
