"""The frame-averaged baseline: blind to frame order by construction, so a clip and its time-reversal score
identically and reversed hard-negative pairs sit at exactly 50% temporal accuracy."""
import pytest
import torch

from encoders.video_text import build_video_text_model, make_tokenize
from retrieval import eval as cli
from retrieval.corpora import load_benchmark
from retrieval.frame_average import FrameAveraged
from retrieval.synth.writer import SynthConfig, generate


@pytest.fixture(scope="module")
def tiny():
    model, tokenizer = build_video_text_model(cli.tiny_config(num_frames=4, seed=0))
    return model.eval(), make_tokenize(tokenizer, 16)


def test_reversed_clip_scores_identically_only_when_frame_averaged(tiny):
    model, tokenize = tiny
    torch.manual_seed(1)
    video = torch.randn(2, 4, 3, 32, 32)
    backwards = video.flip(1)
    ids, mask = tokenize(["a red circle moves left", "a blue square grows"])
    baseline = FrameAveraged(model)
    with torch.no_grad():
        tok, pooled = baseline.encode_vision(video)
        tok_r, pooled_r = baseline.encode_vision(backwards)
        full_tok, full_pooled = model.encode_vision(video)
        assert tok.shape == full_tok.shape and pooled.shape == full_pooled.shape
        torch.testing.assert_close(pooled.mean(1), pooled_r.mean(1), rtol=1e-5, atol=1e-5)
        text_tok, _ = model.encode_text(ids, mask)
        itm = baseline.itm_logits(tok, text_tok, mask)
        itm_r = baseline.itm_logits(tok_r, text_tok, mask)
        torch.testing.assert_close(itm, itm_r, rtol=1e-4, atol=1e-5)  # cross-attention over an unordered set
        _, full_pooled_r = model.encode_vision(backwards)
        assert not torch.allclose(full_pooled.mean(1), full_pooled_r.mean(1), atol=1e-4)  # the real model is not


def test_cli_baseline_is_chance_on_reversed_pairs(tmp_path):
    root = tmp_path / "data"
    generate(SynthConfig.tiny(root, msrvtt_test=24, hard_negative_fraction=1.0), progress=False)  # 8-frame clips:
    # all 8 frames sampled, so a reversed clip's frames are exactly its twin's, backwards
    bench = load_benchmark("msrvtt", root)
    assert "reversed" in bench.temporal.values()
    common = ["--bench", "msrvtt", "--data-root", str(root), "--cache-dir", str(tmp_path / "c"), "--checkpoint",
              cli.TINY_MODEL, "--num-frames", "8", "--k-test", "24", "--no-progress", "--batch-size", "8"]
    full = cli.main(common + ["--output", str(tmp_path / "full.json")])
    assert not full["meta"]["frame_average"] and "temporal_acc_reversed" in full["emb"]
    base = cli.main(common + ["--output", str(tmp_path / "base.json"), "--frame-average"])
    assert base["meta"]["frame_average"] and not base["meta"]["embeddings_cached"]  # never the full model's cache
    for scores in ("emb", "itm"):
        assert base[scores]["temporal_acc_reversed"] == pytest.approx(50.0)  # exactly one of each pair wins
