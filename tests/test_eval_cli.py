"""End to end: `python -m retrieval.eval` on tiny synthetic benchmarks with a random tiny model (in-process)."""
import json
import os
import shutil

import pytest
import torch

from encoders.video_text import build_video_text_model
from retrieval import eval as cli
from retrieval.corpora import load_benchmark
from retrieval.synthetic import synthetic_root

COMMON = ["--checkpoint", cli.TINY_MODEL, "--num-frames", "4", "--k-test", "4", "--no-progress", "--batch-size", "4"]


def test_synthetic_split_generated_when_no_data_root(tmp_path, monkeypatch):
    root = synthetic_root("lsmdc", tmp_path, videos=3, train_videos=None)
    bench = load_benchmark("lsmdc", root)
    assert len(bench.videos) == 3 and not (root / "MSRVTT_Videos").exists()
    assert synthetic_root("lsmdc", tmp_path, videos=3, train_videos=None) == root  # generated once
    monkeypatch.setattr("retrieval.synth.writer.GENERATOR_VERSION", 1)  # files written by another generator
    assert synthetic_root("lsmdc", tmp_path, videos=3, train_videos=None) != root


def test_corpus_with_bad_videos_reports_exactly_those(msrvtt_root, tmp_path, capsys):
    root = tmp_path / "data"
    shutil.copytree(msrvtt_root, root)
    videos = load_benchmark("msrvtt", root).videos
    corrupt, empty, missing = videos[1], videos[4], videos[7]
    with open(corrupt, "r+b") as f:  # keep the size, destroy the content
        f.write(b"\x00garbage" * 64)
    open(empty, "wb").close()
    (root / "MSRVTT_Videos" / missing.split("/")[-1]).unlink()

    out = tmp_path / "res.json"
    res = cli.main(["--bench", "msrvtt", "--data-root", str(root), "--cache-dir", str(tmp_path / "c"),
                    "--output", str(out)] + COMMON)
    assert set(res["skipped_videos"]) == {corrupt, empty, missing}
    assert res["counts"]["videos_evaluated"] == 7 and res["counts"]["texts_evaluated"] == 7
    printed = capsys.readouterr().out
    assert "skipped 3 undecodable video(s)" in printed and "t2v R@1" in printed
    saved = json.loads(out.read_text())
    assert saved["itm"] == res["itm"] and set(saved) >= {"emb", "itm", "counts", "meta"}


def test_cached_embeddings_reused_and_rerank_protocol(msrvtt_root, tmp_path):
    args = ["--bench", "msrvtt", "--data-root", str(msrvtt_root), "--cache-dir", str(tmp_path)] + COMMON
    first = cli.main(args + ["--output", str(tmp_path / "a.json")])
    second = cli.main(args + ["--output", str(tmp_path / "b.json"), "--dual-softmax"])
    assert not first["meta"]["embeddings_cached"] and second["meta"]["embeddings_cached"]
    assert first["emb"] == second["emb"] and first["itm"] == second["itm"] and "emb_dsl" in second
    assert first["counts"]["hard_negative_groups"] > 0 and "temporal_acc" in first["itm"]


def test_official_shaped_checkpoint_loads_with_no_extra_flags(msrvtt_root, tmp_path):
    """A tiny model saved in the official pretraining form (text_encoder.bert.*, text_encoder.cls.*,
    clip_teacher.*) evaluates exactly like the same weights built directly."""
    args = cli.build_parser().parse_args(["--bench", "msrvtt"] + COMMON)
    model, _, _ = cli.load_model(args)
    official = {}
    for k, v in model.state_dict().items():
        official[k.replace("text_encoder.", "text_encoder.bert.", 1) if k.startswith("text_encoder.") else k] = v
    official["text_encoder.cls.predictions.bias"] = torch.zeros(7)
    official["clip_teacher.class_embedding"] = torch.zeros(5)
    path = tmp_path / "official.pth"
    torch.save({"model": official}, path)

    cfg = cli.tiny_config(4, 0)
    overrides = {k: getattr(cfg, k) for k in ("vision_model", "vision_overrides", "text_encoder", "text_layers",
                                              "fusion_layers", "embed_dim")}
    base = ["--bench", "msrvtt", "--data-root", str(msrvtt_root), "--cache-dir", str(tmp_path)] + COMMON[2:]
    direct = cli.main(base + ["--checkpoint", cli.TINY_MODEL, "--output", str(tmp_path / "d.json")])
    loaded = cli.main(base + ["--checkpoint", str(path), "--model-overrides", json.dumps(overrides),
                              "--output", str(tmp_path / "o.json")])
    assert loaded["emb"] == direct["emb"] and loaded["itm"] == direct["itm"]

    # another frame count: the loader interpolates temporal_pos_embedding of the official file
    overrides["vision_overrides"] = {}
    base[base.index("--num-frames") + 1] = "8"
    eight = cli.main(base + ["--checkpoint", str(path), "--model-overrides", json.dumps(overrides),
                             "--output", str(tmp_path / "8.json")])
    assert eight["meta"]["num_frames"] == 8 and eight["counts"]["videos_evaluated"] == 10


def test_tiny_model_builds_from_config():
    model, tokenizer = build_video_text_model(cli.tiny_config(4, 0))
    assert model.vision_encoder.patch_embed.img_size == 32 and tokenizer.cls_token_id == 101


def test_paragraph_benchmark_one_text_per_video(msrvtt_root, tmp_path):
    bench = load_benchmark("didemo", msrvtt_root)
    assert len(bench.texts) == len(bench.videos) == 2 and bench.max_txt_len == 64
    assert all(len(t.split()) > 6 for t in bench.texts)  # sentences joined into one paragraph
    res = cli.main(["--bench", "didemo", "--data-root", str(msrvtt_root), "--cache-dir", str(tmp_path),
                    "--output", str(tmp_path / "d.json")] + COMMON)
    assert res["counts"]["texts_evaluated"] == 2 and res["meta"]["bench"] == "didemo"
    assert res["emb"]["t2v_r5"] == 100.0  # two candidates: every rank is <= 2


@pytest.mark.slow  # two torchrun processes over gloo: about 20 s on an idle 2-core machine
def test_torchrun_split_equals_single_process(msrvtt_root, tmp_path):
    """Videos and ITM pairs split over 2 ranks and summed give exactly the single-process scores, and the
    skip reasons of every rank reach the report."""
    import subprocess
    import sys

    root = tmp_path / "data"
    shutil.copytree(msrvtt_root, root)
    broken = load_benchmark("msrvtt", root).videos[3]  # index 3 is decoded by rank 1 of 2
    open(broken, "wb").close()
    args = ["--bench", "msrvtt", "--data-root", str(root), "--cache-dir", str(tmp_path), "--no-cache"] + COMMON
    single = cli.main(args + ["--output", str(tmp_path / "one.json")])
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "retrieval.eval",
                    *args, "--output", str(tmp_path / "two.json")], check=True, capture_output=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    split = json.loads((tmp_path / "two.json").read_text())
    assert split["emb"] == single["emb"] and split["itm"] == single["itm"]
    assert list(split["skipped_videos"]) == [broken] and split["skipped_videos"][broken] != "undecodable"
