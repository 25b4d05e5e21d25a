import os

import pytest
import torch
import torch.nn.functional as F
from transformers import BertConfig

from encoders.bert import (BertForMaskedLMFusion, BertTextEncoder, build_text_encoder, load_tokenizer, minilm_path,
                           pretrained_text_state_dict)


def tiny_config(**kw) -> BertConfig:
    return BertConfig(**{**dict(vocab_size=50, hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
                                intermediate_size=32, max_position_embeddings=20), **kw})


@pytest.fixture(scope="module")
def minilm():
    return build_text_encoder("minilm", encoder_width=32).eval()


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


def test_bert_base_official_key_names_and_shapes():
    model = build_text_encoder("bert-base", text_layers=9, fusion_layers=3, encoder_width=576, mlm=True)
    sd = model.state_dict()
    assert len(sd) == 235  # 228 encoder keys (incl. position_ids) + 7 MLM-head keys
    assert sd["bert.embeddings.position_ids"].shape == (1, 512)
    assert sd["bert.encoder.layer.9.crossattention.self.key.weight"].shape == (768, 576)
    assert sd["bert.encoder.layer.11.crossattention.self.value.weight"].shape == (768, 576)
    assert sd["bert.encoder.layer.9.crossattention.output.LayerNorm.bias"].shape == (768,)
    assert not any("crossattention" in k for k in sd if k.startswith("bert.encoder.layer.8."))
    assert sorted(k for k in sd if k.startswith("cls.")) == sorted(
        f"cls.predictions.{n}" for n in ("bias", "transform.dense.weight", "transform.dense.bias",
                                         "transform.LayerNorm.weight", "transform.LayerNorm.bias",
                                         "decoder.weight", "decoder.bias"))
    retrieval = build_text_encoder("bert-base", text_layers=9, fusion_layers=3, encoder_width=576, pretrained=False)
    assert len(retrieval.state_dict()) == 228
    assert set(retrieval.state_dict()) == {k[len("bert."):] for k in sd if k.startswith("bert.")}


def test_modes_compose_and_fusion_uses_vision():
    torch.manual_seed(0)
    model = BertTextEncoder(tiny_config(), fusion_layer=2, encoder_width=8).eval()
    ids = torch.randint(1, 50, (2, 6))
    mask = torch.ones(2, 6, dtype=torch.long)
    mask[1, 4:] = 0
    vision = torch.randn(2, 5, 8)
    text = model(ids, mask, mode="text")
    fused = model(attention_mask=mask, encoder_hidden_states=vision, mode="fusion", text_embeds=text)
    full = model(ids, mask, encoder_hidden_states=vision, mode="multimodal")
    torch.testing.assert_close(fused, full)
    other = model(attention_mask=mask, encoder_hidden_states=torch.randn(2, 5, 8), mode="fusion", text_embeds=text)
    assert not torch.allclose(other, fused)
    # padding does not leak into real tokens
    ids2 = ids.clone()
    ids2[1, 4:] = 7
    torch.testing.assert_close(model(ids2, mask, mode="text")[1, :4], text[1, :4])


def test_bad_modes_and_inputs_are_named():
    model = BertTextEncoder(tiny_config(), fusion_layer=2, encoder_width=8)
    with pytest.raises(ValueError, match="mode must be one of"):
        model(torch.ones(1, 3, dtype=torch.long), mode="both")
    with pytest.raises(ValueError, match="needs text_embeds"):
        model(mode="fusion")
    with pytest.raises(ValueError, match="vision tokens"):
        model(torch.ones(1, 3, dtype=torch.long), mode="multimodal")
    with pytest.raises(ValueError, match="fusion_layer"):
        BertTextEncoder(tiny_config(), fusion_layer=4, encoder_width=8)
    with pytest.raises(ValueError, match="neither"):
        build_text_encoder("roberta")


def test_mlm_head_is_tied_to_word_embeddings():
    model = BertForMaskedLMFusion(tiny_config(), fusion_layer=2, encoder_width=8)
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight
    assert model.mlm_logits(torch.randn(2, 3, 16)).shape == (2, 3, 50)


def test_minilm_loads_offline_and_matches_the_reference_bert(minilm, tokenizer, monkeypatch):
    from transformers import BertModel

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert os.path.isfile(os.path.join(minilm_path(), "model.safetensors"))
    reference = BertModel.from_pretrained(minilm_path(), local_files_only=True).eval()
    batch = tokenizer(["a man is playing a guitar", "a dog"], padding=True, return_tensors="pt")
    with torch.no_grad():
        ours = minilm(batch["input_ids"], batch["attention_mask"], mode="text")
        theirs = reference(**batch).last_hidden_state
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_minilm_paraphrases_closer_than_unrelated(minilm, tokenizer):
    texts = ["a man is playing a guitar", "someone plays an acoustic guitar", "a dog runs on the beach"]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        tokens = minilm(batch["input_ids"], batch["attention_mask"], mode="text")
    m = batch["attention_mask"][..., None].float()
    emb = F.normalize((tokens * m).sum(1) / m.sum(1), dim=-1)
    sim = emb @ emb.T
    assert sim[0, 1] > 0.6
    assert sim[0, 2] < 0.3 and sim[1, 2] < 0.3


def test_fusion_layers_copy_the_last_pretrained_layers_and_cross_attention_is_fresh(minilm):
    ref = pretrained_text_state_dict(minilm, minilm_path())
    sd = minilm.state_dict()
    assert minilm.fusion_layer == 6 and len(minilm.encoder.layer) == 8
    torch.testing.assert_close(sd["encoder.layer.4.attention.self.query.weight"],
                               ref["encoder.layer.4.attention.self.query.weight"])
    torch.testing.assert_close(sd["encoder.layer.6.attention.self.query.weight"],
                               sd["encoder.layer.4.attention.self.query.weight"])
    torch.testing.assert_close(sd["encoder.layer.7.output.dense.weight"], sd["encoder.layer.5.output.dense.weight"])
    assert not any("crossattention" in k for k in ref)
    assert sd["encoder.layer.6.crossattention.self.key.weight"].shape == (384, 32)


def test_freeze_text_freezes_only_text_layers():
    model = build_text_encoder("minilm", encoder_width=32, freeze_text=True)
    assert not model.embeddings.word_embeddings.weight.requires_grad
    assert not any(p.requires_grad for p in model.encoder.layer[5].parameters())
    assert all(p.requires_grad for p in model.encoder.layer[6].parameters())


def test_trainable_text_layers_leave_the_top_text_layers_trainable():
    model = build_text_encoder("minilm", encoder_width=32, freeze_text=True, trainable_text_layers=2)
    assert not model.embeddings.word_embeddings.weight.requires_grad
    assert not any(p.requires_grad for p in model.encoder.layer[3].parameters())
    assert all(p.requires_grad for p in model.encoder.layer[4].parameters())
    assert all(p.requires_grad for p in model.encoder.layer[5].parameters())
    with pytest.raises(ValueError, match="skip_top"):
        build_text_encoder("minilm", encoder_width=32, freeze_text=True, trainable_text_layers=7)


def test_tokenizer_is_the_uncased_bert_vocabulary(tokenizer):
    assert (tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id, tokenizer.mask_token_id) == \
        (101, 102, 0, 103)
    assert tokenizer.vocab_size == 30522
    assert tokenizer("Hello World")["input_ids"] == tokenizer("hello world")["input_ids"]
