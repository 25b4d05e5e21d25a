"""Does the matching head help search? Text→video R@1 on held-out synthetic MSRVTT-style splits, side by side:
the embeddings alone (ITC), the matching head alone on the top-k candidates (the official protocol), and the
fused score ITC + w · ITM logit on the same candidates, with w chosen on the first split and reported on the others.

    .venv/bin/python benchmarks/bench_rerank.py [--videos 1000] [--seeds 11 12] [--k 16]

The splits are generated with seeds no demo-model run was trained on (the demo corpora used seeds 0-5, and test
splits draw from scenes reserved for tests). k is how many candidates the service re-ranks (one page).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from encoders.video_text import demo_model_path, load_video_text_model
from retrieval.corpora import load_benchmark
from retrieval.evaluation import ClipLoading, compute_embeddings
from retrieval.evaluator import EvalConfig, itc_scores, itm_scores
from retrieval.synth.writer import SynthConfig, generate

WEIGHTS = (0.0, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0)


def split(root: Path, seed: int, videos: int) -> Path:
    out = root / f"msrvtt-seed{seed}-{videos}"
    if not (out / "manifest.json").is_file():
        counts = {f: 0 for f in ("webvid", "cc3m", "msrvtt_train", "msvd_train", "msvd_test", "lsmdc_train",
                                 "lsmdc_test", "didemo_train", "didemo_test", "anet_train", "anet_val")}
        generate(SynthConfig(out=str(out), seed=seed, msrvtt_test=videos, **counts), progress=False)
    return out


def candidate_scores(model, tokenizer, root: Path, k: int) -> dict:
    """ITC of every (text, video) and the ITM logit of each text's top-k videos by ITC."""
    bench = load_benchmark("msrvtt", root, "test")
    protocol = EvalConfig(k_test=k, progress=False, split_across_ranks=False)
    clips = ClipLoading(num_frames=model.num_frames, image_size=model.image_size, batch_size=32)
    emb, _ = compute_embeddings(model, tokenizer, bench, protocol, clips, "cpu")
    t2v = itc_scores(emb.vision_feat, emb.text_feat).T
    top = t2v.topk(k, dim=1).indices
    pairs = torch.stack([top.reshape(-1), torch.arange(len(t2v)).repeat_interleave(k)], 1)
    order = pairs[:, 0].argsort(stable=True)
    logits = torch.empty(len(pairs))
    logits[order] = itm_scores(model, emb, pairs[order], protocol, "cpu")
    truth = torch.tensor([v if isinstance(v, int) else v[0] for v in bench.txt2vid])
    return {"t2v": t2v, "top": top, "itm": logits.view(-1, k), "truth": truth}


def r_at(ranked: torch.Tensor, truth: torch.Tensor, n: int) -> float:
    return 100.0 * (ranked[:, :n] == truth[:, None]).any(1).float().mean().item()


def rankings(scores: dict, weight: float | None) -> torch.Tensor:
    """Videos per text, best first: the top-k re-ordered (by ITM alone when weight is None), the rest by ITC."""
    top, t2v = scores["top"], scores["t2v"]
    itc_top = t2v.gather(1, top)
    fused = scores["itm"] if weight is None else itc_top + weight * scores["itm"]
    head = top.gather(1, fused.argsort(1, descending=True))
    rest = t2v.argsort(1, descending=True)[:, top.shape[1]:]
    return torch.cat([head, rest], 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", type=int, default=1000)
    p.add_argument("--seeds", type=int, nargs="+", default=[11, 12])
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--checkpoint", default=None, help="default: the demo model")
    p.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "videomamba-retrieval" / "rerank"))
    args = p.parse_args()
    torch.set_num_threads(2)
    model, tokenizer = load_video_text_model(args.checkpoint or demo_model_path())
    splits = {seed: candidate_scores(model, tokenizer, split(Path(args.cache_dir), seed, args.videos), args.k)
              for seed in args.seeds}
    tune = splits[args.seeds[0]]
    by_weight = {w: r_at(rankings(tune, w), tune["truth"], 1) for w in WEIGHTS}
    best = max(WEIGHTS, key=lambda w: (by_weight[w], -w))
    report = {"k": args.k, "videos": args.videos, "tuned_on_seed": args.seeds[0], "weight": best,
              "tuning_r1_by_weight": by_weight, "splits": {}}
    for seed, scores in splits.items():
        itc = scores["t2v"].argsort(1, descending=True)
        report["splits"][seed] = {name: {"R@1": round(r_at(ranked, scores["truth"], 1), 2),
                                         "R@5": round(r_at(ranked, scores["truth"], 5), 2)}
                                  for name, ranked in (("itc", itc), ("itm_only", rankings(scores, None)),
                                                       (f"itc+{best}*itm", rankings(scores, best)))}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
