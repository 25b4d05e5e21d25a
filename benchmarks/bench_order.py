""""A then B" on the synthetic events split: the ordered-pair search the service runs, side by side with a
bag-of-moments baseline (the same two queries scored without order) and, for reference, the one sentence
"A, then B" as a plain query.

    .venv/bin/python benchmarks/bench_order.py [--videos 160 --seed 0 --data data/bench_order --model-path DIR]

Every video of the split (2 or 3 events in order, 7-9 s each with its idle time) comes with its twin: the same
parts in reverse order, hence the same frames. The split is written once under --data and reused; each run indexes
it into a new FaissLibrary the way the service ingests (Embedder.embed_video with the service's default window and
stride) with the demo model, then asks, for every video and every two of its events A before B (by their
captions):
- ordered: index.search with `then` and the service's default max_gap (what POST /search does with "then");
  a video without an in-order pair is not returned and ranks below every video that is; "any gap": the same with
  max_gap an hour, which shows what the default gap leaves out (A and C of three events lie further apart);
- bag of moments: index.moments.unordered_pair, the best moment of A and of B wherever they are (mean score);
- sentence: the single query "<subject> <A>, then <B> on a <background> background", each video by its best window.
Pairwise: the video scores above its twin for (A, B) (a tie counts a half). R@1 / R@5: the video among all videos of
the split, ties broken at random (the expectation is counted). The split holds at most FUSION_DEPTH videos, so the
ordered search sees every video as a candidate.
"""
from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

import numpy as np

from encoders.video_text import demo_model_path, load_embedder
from index import FaissLibrary, IndexConfig, NewVideo
from index.moments import unordered_pair
from index.search import FUSION_DEPTH, Query, search
from retrieval.corpora import EventVideo, read_events
from retrieval.synth import SynthConfig, generate
from service.config import ServiceConfig

METHODS = ("ordered", "ordered, any gap", "bag of moments", "sentence")
ANY_GAP = 3600.0


def events_split(data: Path, videos: int, seed: int) -> Path:
    """The data root of an events split of `videos` videos, written once."""
    root = data / f"events-{videos}-seed{seed}"
    if not (root / "manifest.json").is_file():
        counts = {f: 0 for f in ("webvid", "cc3m", "msrvtt_train", "msrvtt_test", "msvd_train", "msvd_test",
                                 "lsmdc_train", "lsmdc_test", "didemo_train", "didemo_test", "anet_train", "anet_val")}
        generate(SynthConfig(out=str(root), seed=seed, events_test=videos, **counts), progress=False)
    return root


def then_sentence(first: str, then: str) -> str:
    """Two event captions of one subject ("a small red star moves up on a gray background") as the one sentence the
    demo model was trained on for two events ("a small red star moves up, then ... on a gray background")."""
    subject, tail = " ".join(first.split()[:4]), first[first.rindex(" on a "):]
    action = lambda caption: caption[len(subject) + 1:caption.rindex(" on a ")]  # noqa: E731
    return f"{subject} {action(first)}, then {action(then)}{tail}"


def expected_recall(scores: np.ndarray, target: int, k: int) -> float:
    """P(target in the top k) when ties are broken at random."""
    better = int((scores > scores[target]).sum())
    tied = int((scores == scores[target]).sum())  # the target included
    return max(0, min(k - better, tied)) / tied


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", type=int, default=160, help="videos of the split (even: twins), at most "
                   f"{FUSION_DEPTH}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", type=Path, default=Path("data/bench_order"))
    p.add_argument("--model-path", default=demo_model_path())
    args = p.parse_args()
    if not 2 <= args.videos <= FUSION_DEPTH:
        p.error(f"--videos must be between 2 and {FUSION_DEPTH}")
    config = ServiceConfig()
    window, stride, max_gap = config.segment_window, config.segment_stride, Query(vector=None).max_gap

    started = time.perf_counter()
    root = events_split(args.data, args.videos, args.seed)
    split = read_events(root)
    split_s = time.perf_counter() - started
    embedder = load_embedder(args.model_path)
    with tempfile.TemporaryDirectory() as tmp:
        library = FaissLibrary(Path(tmp), embedder.dim, IndexConfig(kind="flat"))
        started = time.perf_counter()
        ids, lengths = [], []
        for video in split:
            emb = embedder.embed_video(video.path, window, stride)
            lengths.append(emb.duration)
            ids += library.add_videos([NewVideo(video.path, emb.duration, emb.spans, emb.vectors)])
        ingest_s = time.perf_counter() - started
        windows = sum(len(library.video_segments(i)[0]) for i in ids)
        started = time.perf_counter()
        results = measure(library, embedder, split, ids, max_gap)
        query_s = time.perf_counter() - started
        library.close()

    pairs = len(results["ordered"]["pairwise"])
    events = sorted({len(v.captions) for v in split})
    print(f"split: {len(split)} videos ({len(split) // 2} twin pairs; {'/'.join(map(str, events))} events; "
          f"{min(lengths):.0f}-{max(lengths):.0f} s), {pairs} (A, B) pairs; window {window:g} s, stride {stride:g} s, "
          f"max_gap {max_gap:g} s; model {args.model_path}")
    print(f"split written or read in {split_s:.1f} s; indexed {windows} windows in {ingest_s:.1f} s; "
          f"{len(METHODS) * pairs} ranked queries in {query_s:.1f} s")
    print(f"{'':18} {'pairwise vs twin':>17} {'R@1':>7} {'R@5':>7}")
    for name in METHODS:
        r = results[name]
        print(f"{name:18} {100 * np.mean(r['pairwise']):16.1f}% {100 * np.mean(r['r1']):6.1f}% "
              f"{100 * np.mean(r['r5']):6.1f}%")


def measure(library: FaissLibrary, embedder, split: list[EventVideo], ids: list[int],
            max_gap: float) -> dict[str, dict[str, list[float]]]:
    """Per method, the pairwise win (1, a tie 0.5, 0) and R@1, R@5 of every (video, A before B)."""
    twin = {}
    for i, video in enumerate(split):
        twin[i] = next(j for j, other in enumerate(split) if other.group == video.group and j != i)
    asks = [(i, a, b) for i, video in enumerate(split) for a, b in itertools.combinations(video.captions, 2)]
    texts = sorted({t for _, a, b in asks for t in (a, b, then_sentence(a, b))})
    vectors = dict(zip(texts, embedder.embed_texts(texts)))
    segments = [library.video_segments(vid) for vid in ids]
    position = {vid: i for i, vid in enumerate(ids)}
    n = len(ids)
    out = {name: {"pairwise": [], "r1": [], "r5": []} for name in METHODS}
    for i, a, b in asks:
        va, vb = vectors[a], vectors[b]
        ordered = [np.full(n, -np.inf), np.full(n, -np.inf)]
        for scores, gap in zip(ordered, (max_gap, ANY_GAP)):
            for result in search(library, [Query(vector=va, then=vb, max_gap=gap, k=n)])[0].results:
                scores[position[result.video.id]] = result.score
        bag = np.array([unordered_pair(spans, vecs @ va, vecs @ vb)[2] for spans, vecs in segments])
        sentence = np.full(n, -np.inf)
        for result in search(library, [Query(vector=vectors[then_sentence(a, b)], k=n)])[0].results:
            sentence[position[result.video.id]] = result.score
        for name, scores in zip(METHODS, (*ordered, bag, sentence)):
            mine, other = scores[i], scores[twin[i]]
            out[name]["pairwise"].append(1.0 if mine > other else 0.5 if mine == other else 0.0)
            out[name]["r1"].append(expected_recall(scores, i, 1))
            out[name]["r5"].append(expected_recall(scores, i, 5))
    return out


if __name__ == "__main__":
    main()
