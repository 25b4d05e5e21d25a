import pytest
import torch
import torch.nn as nn

from retrieval.evaluator import (
    ITM_FILL,
    EvalConfig,
    Embeddings,
    encode_texts,
    encode_videos,
    evaluate,
    itc_scores,
    rerank,
    rerank_pairs,
)


class PairScorer(nn.Module):
    """Smallest model with the VideoTextModel evaluation surface: linear encoders and an ITM head over pooled
    vision tokens times the text cls, so every pair has a distinct, checkable logit."""

    def __init__(self, dim=8, vocab=50):
        super().__init__()
        torch.manual_seed(0)
        self.patch = nn.Linear(3, dim)
        self.embed = nn.Embedding(vocab, dim)
        self.vision_proj = nn.Linear(dim, 4)
        self.text_proj = nn.Linear(dim, 4)
        self.itm_head = nn.Linear(dim, 2)

    def encode_vision(self, video):
        tokens = self.patch(video.mean((-1, -2)))  # (B, T, D): one token per frame
        return tokens, tokens

    def encode_text(self, ids, mask):
        tokens = self.embed(ids) * mask.unsqueeze(-1)
        return tokens, tokens[:, 0]

    def itm_logits(self, vision_tokens, text_tokens, text_mask):
        return self.itm_head(vision_tokens.mean(1) * text_tokens[:, 0])


def tokenize(texts):
    """Right-padded ids of different lengths (2..5 of 6), so re-ranking's length grouping and trimming are used."""
    ids = torch.tensor([[1 + (sum(map(ord, t)) * (i + 1)) % 49 for i in range(6)] for t in texts])
    lengths = torch.tensor([2 + sum(map(ord, t)) % 4 for t in texts])
    mask = (torch.arange(6) < lengths[:, None]).long()
    return ids * mask, mask


def tiny_video_text_model():
    """The CLI's tiny model with two fusion layers, so re-ranking's [CLS]-only last layer follows a full one."""
    from dataclasses import replace

    from encoders.video_text import build_video_text_model
    from retrieval.eval import tiny_config

    return build_video_text_model(replace(tiny_config(num_frames=2, seed=0), fusion_layers=2))[0].eval()


def make_embeddings(model, n_videos=6, n_texts=6, frames=3, size=4):
    videos = torch.randn(n_videos, frames, 3, size, size, generator=torch.Generator().manual_seed(1))
    batches = [(videos[i : i + 4], torch.arange(i, min(i + 4, n_videos))) for i in range(0, n_videos, 4)]
    cfg = EvalConfig(text_batch_size=4, progress=False)
    texts = [f"caption number {i}" for i in range(n_texts)]
    tok, mask, tfeat = encode_texts(model, tokenize, texts, cfg, "cpu")
    vtok, vfeat, ok = encode_videos(model, batches, n_videos, "cpu", cfg)
    return Embeddings(tok, mask, tfeat, vtok, vfeat, ok)


def test_itc_is_mean_of_per_frame_cosines():
    model = PairScorer()
    emb = make_embeddings(model)
    per_frame = torch.einsum("vfe,te->vtf", emb.vision_feat, emb.text_feat).mean(-1)
    torch.testing.assert_close(itc_scores(emb.vision_feat, emb.text_feat), per_frame)
    assert torch.allclose(emb.vision_feat.norm(dim=-1), torch.ones(6, 3))


@pytest.mark.parametrize("kind,project_once", [("pair_scorer", True), ("umt_tiny", True), ("umt_tiny", False)])
def test_rerank_is_itm_logit_on_top_k_and_minus_100_elsewhere(kind, project_once):
    if kind == "umt_tiny":
        model = tiny_video_text_model()
        emb = make_embeddings(model, frames=2, size=32)
        assert len(model.project_vision_for_itm(emb.vision_tokens[:1])) == 2  # one (key, value) per fusion layer
    else:
        model = PairScorer().eval()
        emb = make_embeddings(model)
    itc = itc_scores(emb.vision_feat, emb.text_feat)
    k = 2
    cfg = EvalConfig(k_test=k, itm_batch_size=3, itm_video_chunk=4, progress=False, project_vision_once=project_once)
    v2t, t2v = rerank(model, emb, itc, cfg, "cpu")
    with torch.no_grad():
        every = model.itm_logits(
            emb.vision_tokens.repeat_interleave(6, 0), emb.text_tokens.repeat(6, 1, 1), emb.text_mask.repeat(6, 1)
        )[:, 1].view(6, 6)
    for v in range(6):
        top = set(itc[v].topk(k).indices.tolist())
        for t in range(6):
            expect = every[v, t] if t in top else torch.tensor(ITM_FILL)
            torch.testing.assert_close(v2t[v, t], expect, rtol=1e-5, atol=1e-5)
    for t in range(6):
        top = set(itc[:, t].topk(k).indices.tolist())
        for v in range(6):
            expect = every[v, t] if v in top else torch.tensor(ITM_FILL)
            torch.testing.assert_close(t2v[t, v], expect, rtol=1e-5, atol=1e-5)


def test_rerank_pairs_deduplicates_both_directions():
    itc = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.8, 0.1], [0.3, 0.2, 0.7]])
    v2t_mask, t2v_mask, pairs = rerank_pairs(itc, 1)
    assert pairs.tolist() == [[0, 0], [1, 1], [2, 2]]
    assert v2t_mask.sum() == 3 and t2v_mask.sum() == 3


def test_evaluate_reports_both_score_sets_and_skips_undecoded_videos():
    model = PairScorer().eval()
    emb = make_embeddings(model)
    emb.video_ok[4] = False
    groups = [[0, 1], [2, 3, 4]]
    cfg = EvalConfig(k_test=3, progress=False, dual_softmax=True)
    res = evaluate(model, emb, list(range(6)), [[i] for i in range(6)], cfg, groups=groups)
    assert set(res) == {"emb", "emb_dsl", "itm", "counts"}
    assert res["counts"] == {
        "videos": 6, "videos_evaluated": 5, "texts": 6, "texts_evaluated": 5, "hard_negative_groups": 2
    }
    for name in ("emb", "itm"):
        assert 0 <= res[name]["t2v_r1"] <= res[name]["t2v_r5"] <= 100
        assert "temporal_acc" in res[name]
    # with 5 videos every rank is <= 5, so R@5 is 100 for ITC
    assert res["emb"]["t2v_r5"] == 100.0


def test_perfect_embeddings_score_100():
    feat = torch.eye(4)
    emb = Embeddings(
        torch.zeros(4, 2, 3), torch.ones(4, 2), feat, torch.zeros(4, 2, 3), feat.unsqueeze(1).repeat(1, 2, 1)
    )
    res = evaluate(None, emb, [0, 1, 2, 3], [0, 1, 2, 3], EvalConfig(rerank=False, progress=False))
    assert res["emb"]["t2v_r1"] == 100.0 and res["emb"]["v2t_meanr"] == 1.0


def test_no_decodable_video_is_a_clear_error():
    model = PairScorer()
    with pytest.raises(RuntimeError, match="no video could be encoded"):
        encode_videos(model, [], 3, "cpu", EvalConfig(progress=False))
