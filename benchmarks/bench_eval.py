"""Retrieval evaluation speed on CPU.

1. ITM re-ranking, side by side on the same pairs and model: the protocol written directly (batches of pairs
   through `itm_logits` at full padded text width) vs. the evaluator's `itm_scores` (texts grouped by length
   and cut to the batch's longest), with vision tokens projected per pair or once per video chunk (the
   default). Prints times, ratios to the direct version and the largest score difference.
2. Optionally (--full N) a whole `python -m retrieval.eval --bench msrvtt` run on an N-video synthetic split
   (generation excluded), with the encode / score split.

    .venv/bin/python benchmarks/bench_eval.py --videos 16 --texts 16
    .venv/bin/python benchmarks/bench_eval.py --full 1000 --checkpoint encoders/pretrained/videomamba_demo
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from encoders.video_text import VideoTextConfig, build_video_text_model, load_video_text_model, save_pretrained
from retrieval import eval as cli
from retrieval.evaluator import EvalConfig, Embeddings, itm_scores, rerank_pairs
from retrieval.synthetic import synthetic_root

STAND_IN = dict(vision_model="videomamba_tiny", vision_overrides={"img_size": 64, "num_frames": 8},
                text_pretrained=False, mlm=False)  # VideoMamba-Ti on 64x64 synthetic frames, MiniLM 6 + 2 fusion


def build_model(checkpoint: str | None, config_json: str):
    if checkpoint:
        return load_video_text_model(checkpoint)[0]
    return build_video_text_model(VideoTextConfig(**{**STAND_IN, **json.loads(config_json)}))[0].eval()


def random_embeddings(model, videos: int, texts: int, frames: int, text_len: int) -> Embeddings:
    """Random tokens shaped like the model's; text lengths drawn from 10..20 real tokens of `text_len`
    (synthetic msrvtt captions tokenize to about that inside max_txt_len 32)."""
    enc = model.vision_encoder
    tokens = frames * (enc.patch_embed.img_size // enc.patch_embed.patch_size) ** 2
    g = torch.Generator().manual_seed(0)
    hidden, dim = model.text_bert.hidden_size, model.cfg.embed_dim
    lengths = torch.randint(10, 21, (texts, 1), generator=g).clamp(max=text_len)
    mask = (torch.arange(text_len) < lengths).long()
    feat = torch.nn.functional.normalize(torch.randn(videos, frames, dim, generator=g), dim=-1)
    return Embeddings(torch.randn(texts, text_len, hidden, generator=g), mask,
                      torch.nn.functional.normalize(torch.randn(texts, dim, generator=g), dim=-1),
                      torch.randn(videos, tokens, enc.embed_dim, generator=g), feat)


@torch.no_grad()
def naive_itm(model, emb: Embeddings, pairs: torch.Tensor, batch: int) -> torch.Tensor:
    """The protocol written directly: each batch of pairs through `itm_logits` at full padded width."""
    out = torch.zeros(len(pairs))
    for s in range(0, len(pairs), batch):
        v, t = pairs[s : s + batch].T
        out[s : s + batch] = model.itm_logits(emb.vision_tokens[v], emb.text_tokens[t], emb.text_mask[t])[:, 1]
    return out


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def bench_itm(model, args) -> dict:
    emb = random_embeddings(model, args.videos, args.texts, args.frames, args.text_len)
    _, _, pairs = rerank_pairs(emb.vision_feat.mean(1) @ emb.text_feat.T, args.k_test)
    out = {"pairs": len(pairs), "vision_tokens_per_video": emb.vision_tokens.shape[1]}
    naive_itm(model, emb, pairs[: args.itm_batch_size], args.itm_batch_size)  # warm-up
    runs = {"naive": lambda: naive_itm(model, emb, pairs, args.itm_batch_size)}
    for once in (False, True):
        cfg = EvalConfig(k_test=args.k_test, itm_batch_size=args.itm_batch_size, progress=False,
                         project_vision_once=once)
        runs["evaluator_project_once" if once else "evaluator_per_pair"] = (
            lambda cfg=cfg: itm_scores(model, emb, pairs, cfg, "cpu"))
    scores = {}
    for name, fn in runs.items():
        scores[name], seconds = timed(fn)
        out[name] = {"seconds": round(seconds, 3), "pairs_per_s": round(len(pairs) / seconds, 1)}
    for name in ("evaluator_per_pair", "evaluator_project_once"):
        out[name]["speedup_vs_naive"] = round(out["naive"]["seconds"] / out[name]["seconds"], 2)
        out[name]["max_abs_diff_vs_naive"] = float((scores[name] - scores["naive"]).abs().max())
    return out


def bench_full(args) -> dict:
    cache = Path(args.cache_dir or tempfile.mkdtemp(prefix="bench_eval_"))
    start = time.perf_counter()
    root = synthetic_root("msrvtt", cache, args.full, None)
    generated = time.perf_counter() - start
    argv = ["--bench", "msrvtt", "--data-root", str(root), "--cache-dir", str(cache), "--no-cache",
            "--num-frames", str(args.frames), "--k-test", str(args.k_test), "--output", str(cache / "full.json")]
    argv += ["--checkpoint", args.checkpoint] if args.checkpoint else []
    start = time.perf_counter()
    res = cli.main(argv)
    total = time.perf_counter() - start
    return {"videos": args.full, "generate_seconds": round(generated, 1), "eval_seconds": round(total, 1),
            "encode_seconds": res["meta"]["encode_seconds"], "score_seconds": res["meta"]["score_seconds"],
            "itm": {k: round(v, 2) for k, v in res["itm"].items()}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None, help="a saved model; default: a random stand-in (see STAND_IN)")
    p.add_argument("--config", default="{}", help="JSON overrides of the stand-in VideoTextConfig")
    p.add_argument("--videos", type=int, default=16)
    p.add_argument("--texts", type=int, default=16)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--text-len", type=int, default=32)
    p.add_argument("--k-test", type=int, default=128)
    p.add_argument("--itm-batch-size", type=int, default=64)
    p.add_argument("--full", type=int, default=0, help="also time a whole evaluation of this many videos")
    p.add_argument("--cache-dir", default=None)
    args = p.parse_args()
    torch.manual_seed(0)
    model = build_model(args.checkpoint, args.config)
    print(json.dumps({"threads": torch.get_num_threads(), "itm": bench_itm(model, args)}, indent=1))
    if args.full:
        if not args.checkpoint:  # the CLI loads saved models: save the stand-in
            args.checkpoint = tempfile.mkdtemp(prefix="bench_eval_model_")
            save_pretrained(model, args.checkpoint)
        print(json.dumps({"full": bench_full(args)}, indent=1))


if __name__ == "__main__":
    main()
