"""Retrieval metrics over a full score matrix, following the official `itm_eval`.

A query's rank is the best (smallest) rank over its ground-truth items, as in the official code.
Tie rule (stated because the official code leaves it to `np.argsort`): ties count against the query, i.e. the
rank of a ground truth `g` is `1 + #{j != g : score_j >= score_g}`. A model that scores everything equally
therefore gets the worst rank, never R@1 = 100. Recalls are percentages; ranks are 1-based.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

RECALL_AT = (1, 5, 10)


def gt_lists(gts: Sequence[int | Sequence[int]], num_items: int, what: str = "ground truth") -> list[list[int]]:
    out = []
    for q, g in enumerate(gts):
        ids = [int(g)] if isinstance(g, int) or (torch.is_tensor(g) and g.ndim == 0) else [int(x) for x in g]
        if not ids:
            raise ValueError(f"{what}: query {q} has no ground-truth item")
        bad = [i for i in ids if not 0 <= i < num_items]
        if bad:
            raise ValueError(f"{what}: query {q} has ground truth {bad} outside [0, {num_items})")
        out.append(ids)
    return out


def query_ranks(scores: torch.Tensor, gts: Sequence[int | Sequence[int]], what: str = "scores") -> torch.Tensor:
    """Best 1-based rank of each query's ground truths; `scores` is (num_queries, num_items), higher is better."""
    if scores.ndim != 2:
        raise ValueError(f"{what}: expected a 2-D score matrix, got shape {tuple(scores.shape)}")
    if len(gts) != scores.shape[0]:
        raise ValueError(f"{what}: {scores.shape[0]} queries but {len(gts)} ground-truth entries")
    if torch.isnan(scores).any():
        raise ValueError(f"{what}: score matrix contains NaN")
    scores = scores.double()
    targets = gt_lists(gts, scores.shape[1], what)
    ranks = torch.empty(len(targets), dtype=torch.long)
    for q, ids in enumerate(targets):
        row = scores[q]
        gt_scores = row[ids]
        at_least = (row.unsqueeze(0) >= gt_scores.unsqueeze(1)).sum(1)  # includes the item itself
        ranks[q] = int(at_least.min())
    return ranks


def rank_summary(ranks: torch.Tensor, prefix: str) -> dict[str, float]:
    """R@1/5/10 (percent), median rank and mean rank of a vector of 1-based ranks."""
    r = ranks.double()
    out = {f"{prefix}_r{k}": float((r <= k).double().mean() * 100) for k in RECALL_AT}
    out[f"{prefix}_medr"] = float(r.quantile(0.5))  # the usual median: mean of the two middles when even
    out[f"{prefix}_meanr"] = float(r.mean())
    return out


def retrieval_metrics(
    t2v: torch.Tensor,
    v2t: torch.Tensor,
    txt2vid: Sequence[int | Sequence[int]],
    vid2txt: Sequence[int | Sequence[int]],
) -> dict[str, float]:
    """Text→video and video→text metrics, plus `r_mean` (mean of the six recalls, the official model-selection key).

    `t2v` is (N_t, N_v), `v2t` is (N_v, N_t); they are separate matrices because ITM re-ranking fills them
    from different candidate sets.
    """
    if t2v.shape[::-1] != v2t.shape:
        raise ValueError(f"t2v {tuple(t2v.shape)} and v2t {tuple(v2t.shape)} are not transposed shapes")
    out = rank_summary(query_ranks(t2v, txt2vid, "text->video"), "t2v")
    out |= rank_summary(query_ranks(v2t, vid2txt, "video->text"), "v2t")
    out["r_mean"] = sum(out[f"{d}_r{k}"] for d in ("t2v", "v2t") for k in RECALL_AT) / 6
    return out


def temporal_accuracy(v2t: torch.Tensor, groups: Sequence[Sequence[int]], vid2txt: Sequence[int | Sequence[int]]) -> float:
    """Percent of clips in hard-negative groups whose own caption outscores every caption of the other clips in
    the group (strictly: a tie is a miss). `groups` are lists of video indices; `v2t` is (N_v, N_t).
    With several captions per clip, the clip's best own caption must beat the other clips' best caption.
    """
    own = gt_lists(vid2txt, v2t.shape[1], "vid2txt")
    if len(own) != v2t.shape[0]:
        raise ValueError(f"vid2txt has {len(own)} entries for {v2t.shape[0]} videos")
    hits = total = 0
    for g, group in enumerate(groups):
        members = [int(v) for v in group]
        if len(members) < 2:
            raise ValueError(f"hard-negative group {g} has {len(members)} clip(s); a group needs at least 2")
        for v in members:
            if not 0 <= v < v2t.shape[0]:
                raise ValueError(f"hard-negative group {g} names video {v} outside [0, {v2t.shape[0]})")
        for v in members:
            others = [t for u in members if u != v for t in own[u]]
            hits += bool(v2t[v, own[v]].max() > v2t[v, others].max())
            total += 1
    if total == 0:
        raise ValueError("temporal accuracy needs at least one hard-negative group")
    return 100.0 * hits / total
