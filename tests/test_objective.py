"""The UMT objective around the joint model: which losses each stage forms, the temperature clamp, MLM on a model
saved without an MLM head, and the objective's settings validated by the training config."""
import pytest
import torch

from encoders.video_text import (VideoTextConfig, build_video_text_model, load_video_text_model, make_tokenize,
                                 save_pretrained)
from training.config import load_config
from training.objective import UMTObjective


def test_forward_losses_per_stage(tiny):
    model, _, video, ids, mask = tiny
    objective = UMTObjective(model)
    model.train()
    g = torch.Generator().manual_seed(0)
    stage1 = objective(video, ids, mask, stage=1, generator=g)
    assert set(stage1) == {"loss_vtc", "loss_vtm", "loss_mlm", "loss_uta"}
    assert all(torch.isfinite(v) and v > 0 for v in stage1.values())
    sum(stage1.values()).backward()
    assert model.vision_encoder.clip_decoder[0].head.weight.grad is not None
    assert model.itm_head.weight.grad is not None
    stage2 = objective(video, ids, mask, stage=2, generator=g)
    assert set(stage2) == {"loss_vtc", "loss_vtm", "loss_mlm"}
    assert set(objective(video, ids, mask, stage=2, mlm=False, generator=g)) == {"loss_vtc", "loss_vtm"}
    with pytest.raises(ValueError, match="stage must be 1 or 2"):
        objective(video, ids, mask, stage=3)
    model.zero_grad()


def test_temperature_is_clamped(tiny):
    model, _, video, ids, mask = tiny
    objective = UMTObjective(model)
    with torch.no_grad():
        model.temp.fill_(5.0)
    objective(video, ids, mask, stage=2, mlm=False)
    assert model.temp.item() == pytest.approx(0.5)
    with torch.no_grad():
        model.temp.fill_(0.07)


def test_mlm_head_added_to_a_model_saved_without_one_keeps_its_weights(tmp_path):
    torch.manual_seed(0)
    cfg = VideoTextConfig(vision_model="videomamba_test_tiny", mlm=False, max_txt_len=12)
    model, tokenizer = build_video_text_model(cfg)
    save_pretrained(model, str(tmp_path), only_changed=True)
    loaded, _ = load_video_text_model(str(tmp_path))
    before = {k.replace("text_encoder.", "text_encoder.bert.", 1): v.clone() for k, v in loaded.state_dict().items()}
    loaded.add_mlm_head()
    after = loaded.state_dict()
    assert loaded.cfg.mlm and set(before) < set(after)
    assert all(torch.equal(v, after[k]) for k, v in before.items())  # the tied decoder did not re-init the embeddings
    head = loaded.text_encoder.cls.predictions
    assert head.decoder.weight is loaded.text_bert.embeddings.word_embeddings.weight
    ids, mask = make_tokenize(tokenizer, 12)(["a red square moves left", "a blue circle grows"])
    losses = UMTObjective(loaded.train())(torch.randn(2, 4, 3, 32, 32), ids, mask, generator=torch.Generator().manual_seed(0))
    assert set(losses) == {"loss_vtc", "loss_vtm", "loss_mlm"} and torch.isfinite(losses["loss_mlm"])
    sum(losses.values()).backward()
    assert head.transform.dense.weight.grad is not None
    loaded.add_mlm_head()
    assert loaded.text_encoder.cls.predictions is head


def test_objective_settings_are_validated():
    with pytest.raises(ValueError, match="objective.mask_type"):
        load_config(overrides=[{"objective": {"mask_type": "blocks"}}])
    assert load_config(stage=1).objective.mask_type == "attention"
