import copy
import json
import os

import pytest
import torch

from encoders.checkpoint import CheckpointError
from encoders.video_text import (VideoTextConfig, VideoTextModel, build_video_text_model, load_video_text_model,
                                 official_config, save_pretrained)

# ----------------------------------------------------------------------------- official key layout (§1.5, §1.6)

D, DEPTH, DI, DT_RANK = 576, 32, 1152, 36  # VideoMamba-M
H, FFN, VOCAB = 768, 3072, 30522  # BERT-base


def official_vision_keys() -> dict[str, tuple]:
    keys = {}
    for i in range(DEPTH):
        p = f"vision_encoder.layers.{i}.mixer."
        keys.update({p + "A_log": (DI, 16), p + "D": (DI,), p + "A_b_log": (DI, 16), p + "D_b": (DI,),
                     p + "in_proj.weight": (2 * DI, D), p + "conv1d.weight": (DI, 1, 4), p + "conv1d.bias": (DI,),
                     p + "x_proj.weight": (DT_RANK + 32, DI), p + "dt_proj.weight": (DI, DT_RANK),
                     p + "dt_proj.bias": (DI,), p + "conv1d_b.weight": (DI, 1, 4), p + "conv1d_b.bias": (DI,),
                     p + "x_proj_b.weight": (DT_RANK + 32, DI), p + "dt_proj_b.weight": (DI, DT_RANK),
                     p + "dt_proj_b.bias": (DI,), p + "out_proj.weight": (D, DI),
                     f"vision_encoder.layers.{i}.norm.weight": (D,)})
    keys.update({"vision_encoder.cls_token": (1, 1, D), "vision_encoder.pos_embed": (1, 197, D),
                 "vision_encoder.temporal_pos_embedding": (1, 8, D),
                 "vision_encoder.patch_embed.proj.weight": (D, 3, 1, 16, 16), "vision_encoder.patch_embed.proj.bias": (D,),
                 "vision_encoder.norm.weight": (D,), "vision_encoder.clip_decoder.0.head.weight": (512, D),
                 "vision_encoder.clip_decoder.0.head.bias": (512,), "vision_encoder.clip_decoder.0.norm.weight": (512,),
                 "vision_encoder.clip_decoder.0.norm.bias": (512,), "vision_encoder.pool_norm.weight": (D,),
                 "vision_encoder.pool_norm.bias": (D,)})
    return keys


def official_text_keys(prefix: str) -> dict[str, tuple]:
    keys = {prefix + "embeddings.position_ids": (1, 512), prefix + "embeddings.word_embeddings.weight": (VOCAB, H),
            prefix + "embeddings.position_embeddings.weight": (512, H),
            prefix + "embeddings.token_type_embeddings.weight": (2, H),
            prefix + "embeddings.LayerNorm.weight": (H,), prefix + "embeddings.LayerNorm.bias": (H,)}
    for i in range(12):
        p = f"{prefix}encoder.layer.{i}."
        for q in ("query", "key", "value"):
            keys.update({p + f"attention.self.{q}.weight": (H, H), p + f"attention.self.{q}.bias": (H,)})
        keys.update({p + "attention.output.dense.weight": (H, H), p + "attention.output.dense.bias": (H,),
                     p + "attention.output.LayerNorm.weight": (H,), p + "attention.output.LayerNorm.bias": (H,),
                     p + "intermediate.dense.weight": (FFN, H), p + "intermediate.dense.bias": (FFN,),
                     p + "output.dense.weight": (H, FFN), p + "output.dense.bias": (H,),
                     p + "output.LayerNorm.weight": (H,), p + "output.LayerNorm.bias": (H,)})
        if i >= 9:
            keys.update({p + "crossattention.self.query.weight": (H, H), p + "crossattention.self.query.bias": (H,),
                         p + "crossattention.self.key.weight": (H, D), p + "crossattention.self.key.bias": (H,),
                         p + "crossattention.self.value.weight": (H, D), p + "crossattention.self.value.bias": (H,),
                         p + "crossattention.output.dense.weight": (H, H), p + "crossattention.output.dense.bias": (H,),
                         p + "crossattention.output.LayerNorm.weight": (H,),
                         p + "crossattention.output.LayerNorm.bias": (H,)})
    return keys


def official_mlm_keys() -> dict[str, tuple]:
    p = "text_encoder.cls.predictions."
    return {p + "bias": (VOCAB,), p + "transform.dense.weight": (H, H), p + "transform.dense.bias": (H,),
            p + "transform.LayerNorm.weight": (H,), p + "transform.LayerNorm.bias": (H,),
            p + "decoder.weight": (VOCAB, H), p + "decoder.bias": (VOCAB,)}


def official_head_keys() -> dict[str, tuple]:
    return {"temp": (), "vision_proj.weight": (512, D), "vision_proj.bias": (512,), "text_proj.weight": (512, H),
            "text_proj.bias": (512,), "itm_head.weight": (2, H), "itm_head.bias": (2,)}


def official_teacher_keys() -> dict[str, tuple]:
    W = 768
    keys = {"clip_teacher.class_embedding": (W,), "clip_teacher.positional_embedding": (197, W),
            "clip_teacher.proj": (W, 512), "clip_teacher.conv1.weight": (W, 3, 1, 16, 16),
            "clip_teacher.ln_pre.weight": (W,), "clip_teacher.ln_pre.bias": (W,),
            "clip_teacher.ln_post.weight": (W,), "clip_teacher.ln_post.bias": (W,)}
    for i in range(12):
        p = f"clip_teacher.transformer.resblocks.{i}."
        keys.update({p + "attn.in_proj_weight": (3 * W, W), p + "attn.in_proj_bias": (3 * W,),
                     p + "attn.out_proj.weight": (W, W), p + "attn.out_proj.bias": (W,),
                     p + "ln_1.weight": (W,), p + "ln_1.bias": (W,), p + "mlp.c_fc.weight": (4 * W, W),
                     p + "mlp.c_fc.bias": (4 * W,), p + "mlp.c_proj.weight": (W, 4 * W), p + "mlp.c_proj.bias": (W,),
                     p + "ln_2.weight": (W,), p + "ln_2.bias": (W,)})
    return keys


def materialize(shapes: dict[str, tuple]) -> dict[str, torch.Tensor]:
    """Cheap distinct values per key (key i filled with i/1000), so a load in the wrong place is detectable."""
    return {k: torch.full(s, i / 1000.0) for i, (k, s) in enumerate(shapes.items())}


@pytest.fixture(scope="module")
def official_pretrain_dict():
    shapes = {**official_vision_keys(), **official_text_keys("text_encoder.bert."), **official_mlm_keys(),
              **official_head_keys()}
    assert len(shapes) == 798
    teacher = official_teacher_keys()
    assert len(teacher) == 152
    sd = materialize({**shapes, **teacher})
    # The MLM decoder is tied to the word embeddings and its bias to `predictions.bias`, equal in released files.
    sd["text_encoder.cls.predictions.decoder.weight"] = sd["text_encoder.bert.embeddings.word_embeddings.weight"]
    sd["text_encoder.cls.predictions.decoder.bias"] = sd["text_encoder.cls.predictions.bias"]
    return sd


@pytest.fixture(scope="module")
def official_retrieval_model():
    model = VideoTextModel(official_config())
    assert len(model.state_dict()) == 791
    return model


official_size = pytest.mark.slow  # official sizes: VideoMamba-M + BERT-base + CLIP-B/16 on CPU


@official_size
def test_official_retrieval_form_loads_strictly(official_retrieval_model):
    shapes = {**official_vision_keys(), **official_text_keys("text_encoder."), **official_head_keys()}
    assert len(shapes) == 791
    sd = materialize(shapes)
    official_retrieval_model.load_official_state_dict(sd)
    loaded = official_retrieval_model.state_dict()
    key = "text_encoder.encoder.layer.10.crossattention.self.key.weight"
    torch.testing.assert_close(loaded[key], sd[key])


@official_size
def test_official_pretraining_checkpoint_with_teacher_loads_into_the_retrieval_form(official_retrieval_model,
                                                                                     official_pretrain_dict):
    # `text_encoder.bert.` renamed, `text_encoder.cls.*` and `clip_teacher.*` dropped, wrapped in {"model": ...}
    official_retrieval_model.load_official_state_dict({"model": official_pretrain_dict})
    loaded = official_retrieval_model.state_dict()
    torch.testing.assert_close(loaded["text_encoder.embeddings.word_embeddings.weight"],
                               official_pretrain_dict["text_encoder.bert.embeddings.word_embeddings.weight"])


@official_size
def test_official_pretraining_form_with_teacher_loads_strictly(official_pretrain_dict):
    model = VideoTextModel(official_config(mlm=True, teacher="clip_b16"))
    assert len(model.state_dict()) == 798 + 152
    model.load_official_state_dict(official_pretrain_dict)
    loaded = model.state_dict()
    for key in ("clip_teacher.transformer.resblocks.11.attn.in_proj_weight", "text_encoder.cls.predictions.bias",
                "vision_encoder.layers.31.mixer.A_b_log"):
        torch.testing.assert_close(loaded[key], official_pretrain_dict[key])


@official_size
def test_official_loading_names_what_does_not_fit(official_retrieval_model, official_pretrain_dict):
    sd = dict(official_pretrain_dict)
    sd["vision_encoder.extra_head.weight"] = torch.zeros(2)
    with pytest.raises(ValueError, match="extra_head"):
        official_retrieval_model.load_official_state_dict(sd)
    sd = dict(official_pretrain_dict)
    del sd["itm_head.bias"]
    with pytest.raises(ValueError, match="itm_head.bias"):
        official_retrieval_model.load_official_state_dict(sd)
    sd = dict(official_pretrain_dict)
    sd["text_proj.weight"] = torch.zeros(512, 384)
    with pytest.raises(ValueError, match="text_proj.weight"):
        official_retrieval_model.load_official_state_dict(sd)


# ----------------------------------------------------------------------------- the tiny joint model


def test_encode_and_embedding_shapes(tiny):
    model, _, video, ids, mask = tiny
    model.eval()
    with torch.no_grad():
        tokens, pooled = model.encode_vision(video)
        text_tokens, cls = model.encode_text(ids, mask)
        v, t = model.vision_embedding(video), model.text_embedding(ids, mask)
        logits = model.itm_logits(tokens, text_tokens, mask)
    assert tokens.shape == (3, 4 * 16, 32) and pooled.shape == (3, 4, 32)
    assert text_tokens.shape == (3, 12, 384) and cls.shape == (3, 384)
    assert v.shape == (3, 4, 512) and t.shape == (3, 512)
    torch.testing.assert_close(v.norm(dim=-1), torch.ones(3, 4))
    torch.testing.assert_close(t.norm(dim=-1), torch.ones(3))
    assert logits.shape == (3, 2)
    with pytest.raises(ValueError, match=r"\(B, T, 3, H, W\)"):
        model.encode_vision(video.transpose(1, 2))


def test_save_and_load_round_trip_only_changed(tiny, tmp_path):
    model, _, video, ids, mask = tiny
    model.eval()
    save_pretrained(model, str(tmp_path), only_changed=True)
    meta = json.loads((tmp_path / "config.json").read_text())
    assert "text_encoder.bert.encoder.layer.0.attention.self.query.weight" in meta["filled_from_package"]
    assert os.path.getsize(tmp_path / "model.safetensors") < 10e6  # MiniLM alone is 90 MB
    loaded, tokenizer = load_video_text_model(str(tmp_path), teacher="none")
    assert loaded.clip_teacher is None and tokenizer.mask_token_id == 103
    own = {k: v for k, v in model.state_dict().items() if not k.startswith("clip_teacher.")}
    assert set(own) == set(loaded.state_dict())
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in own.items())
    with torch.no_grad():
        torch.testing.assert_close(loaded.text_embedding(ids, mask), model.text_embedding(ids, mask))
        torch.testing.assert_close(loaded.vision_embedding(video), model.vision_embedding(video))


def test_half_storage_halves_the_file_and_loads_as_float32(tiny, tmp_path):
    model, _, video, _, _ = tiny
    model.eval()
    save_pretrained(model, str(tmp_path / "full"), only_changed=True)
    save_pretrained(model, str(tmp_path / "half"), only_changed=True, half=True)
    full, half = (os.path.getsize(tmp_path / d / "model.safetensors") for d in ("full", "half"))
    assert half < 0.55 * full
    loaded, _ = load_video_text_model(str(tmp_path / "half"), teacher="none")
    from safetensors.torch import load_file

    stored = load_file(str(tmp_path / "half" / "model.safetensors"))
    assert all(v.dtype == torch.float16 for v in stored.values() if v.is_floating_point())
    for k, v in loaded.state_dict().items():
        own = model.state_dict()[k]
        assert v.dtype == own.dtype
        expected = own.half().to(own.dtype) if k in stored and own.is_floating_point() else own  # else: from package
        torch.testing.assert_close(v, expected, rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(loaded.vision_embedding(video), model.vision_embedding(video), rtol=0, atol=5e-3)


def test_trained_text_weights_are_stored(tiny, tmp_path):
    model, _, _, _, _ = tiny
    key = "text_encoder.bert.encoder.layer.2.output.dense.bias"
    with torch.no_grad():
        model.state_dict()[key].add_(1.0)
    try:
        save_pretrained(model, str(tmp_path), only_changed=True)
        meta = json.loads((tmp_path / "config.json").read_text())
        assert key not in meta["filled_from_package"]
        loaded, _ = load_video_text_model(str(tmp_path), teacher="none")
        torch.testing.assert_close(loaded.state_dict()[key], model.state_dict()[key])
    finally:
        with torch.no_grad():
            model.state_dict()[key].sub_(1.0)


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model directory"):
        load_video_text_model(str(tmp_path / "nothing"))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="model.safetensors is missing"):
        load_video_text_model(str(tmp_path))
    (tmp_path / "model.safetensors").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="format_version None"):
        load_video_text_model(str(tmp_path))
    (tmp_path / "config.json").write_text("{")
    with pytest.raises(CheckpointError, match="config.json is not valid JSON"):
        load_video_text_model(str(tmp_path))
    (tmp_path / "notes.pth").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="notes.pth is not a PyTorch checkpoint"):
        load_video_text_model(str(tmp_path / "notes.pth"))
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="holds a list"):
        load_video_text_model(str(tmp_path / "list.pth"))
    with pytest.raises(ValueError, match="unknown VideoTextConfig fields"):
        VideoTextConfig.from_dict({"vision": "x"})


def test_format_1_config_with_training_fields_loads(tmp_path):
    """Models saved before the training objective moved out of the config (format 1) still load."""
    torch.manual_seed(0)
    model, _ = build_video_text_model(VideoTextConfig(vision_model="videomamba_test_tiny", mlm=False))
    save_pretrained(model, str(tmp_path), only_changed=True)
    meta = json.loads((tmp_path / "config.json").read_text())
    meta["format_version"] = 1
    meta["config"].update(mask_type="attention", mlm_prob=0.5, loss_weights={"vtc": 1.0})
    (tmp_path / "config.json").write_text(json.dumps(meta))
    loaded, _ = load_video_text_model(str(tmp_path))
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    meta["format_version"] = 7
    (tmp_path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="format_version 7"):
        load_video_text_model(str(tmp_path))


def test_the_fingerprint_changes_with_the_weights_and_the_frames_not_with_the_folder(tiny, tmp_path):
    from encoders.video_text import Embedder, load_embedder

    model, tokenizer, *_ = tiny
    save_pretrained(model, str(tmp_path / "a"))
    save_pretrained(model, str(tmp_path / "b"), half=False)
    same = load_embedder(str(tmp_path / "a")).fingerprint
    assert load_embedder(str(tmp_path / "b")).fingerprint == same == Embedder(model, tokenizer).fingerprint
    assert load_embedder(str(tmp_path / "a"), num_frames=model.num_frames * 2).fingerprint != same
    tuned = copy.deepcopy(model)
    with torch.no_grad():
        tuned.vision_proj.weight[0, 0] += 1e-3
    assert Embedder(tuned, tokenizer).fingerprint != same
