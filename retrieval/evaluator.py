"""Zero-shot / fine-tuned retrieval evaluation with the official protocol (`tasks/retrieval_utils.py`).

Two score sets, as the official code reports them:
* `emb` (ITC): per-frame cosine similarity of projected embeddings averaged over frames, temperature 1.
* `itm` (re-ranked): for each text the top-`k_test` videos by ITC and for each video the top-`k_test` texts are
  scored by the matching head's "match" logit; every other entry is -100 (ITC and ITM are not summed).
Optionally `emb_dsl`: dual-softmax applied to the ITC matrices (not part of the official protocol).

The model is anything with `encode_vision`, `encode_text`, `vision_proj`, `text_proj` and `itm_logits`
(`encoders.video_text.VideoTextModel`); one that also has `project_vision_for_itm` (and `itm_logits`' `vision_kv` and
`cls_only`) is re-ranked with each video's cross-attention keys/values projected once. Under torch.distributed,
videos and ITM pairs are split across ranks and the results summed with all_reduce, like the official code.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from encoders.video_text import Tokenize
from retrieval.distributed import rank_world
from retrieval.metrics import gt_lists, retrieval_metrics, temporal_accuracy

ITM_FILL = -100.0


@dataclass
class EvalConfig:
    k_test: int = 128
    text_batch_size: int = 256
    itm_batch_size: int = 64
    itm_video_chunk: int = 8  # videos whose cross-attention keys/values are projected together
    project_vision_once: bool = True  # False: the model's plain `itm_logits` per pair (slower, same scores)
    rerank: bool = True
    dual_softmax: bool = False
    dual_softmax_scale: float = 100.0
    progress: bool = True
    split_across_ranks: bool = True  # False when only one rank evaluates (the training loop's callback)


@dataclass
class Embeddings:
    """Everything the protocol needs from the encoders; row i of the vision tensors is video i."""

    text_tokens: torch.Tensor  # (N_t, L, D_t) text-encoder output, reused by every ITM pair
    text_mask: torch.Tensor  # (N_t, L)
    text_feat: torch.Tensor  # (N_t, E) L2-normalized text_proj(cls)
    vision_tokens: torch.Tensor  # (N_v, T*P, D_v)
    vision_feat: torch.Tensor  # (N_v, T, E) L2-normalized per-frame vision_proj(pooled)
    video_ok: torch.Tensor = field(default=None)  # (N_v,) bool: False for videos that could not be decoded

    def __post_init__(self):
        if self.video_ok is None:
            self.video_ok = torch.ones(self.vision_feat.shape[0], dtype=torch.bool)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.contiguous() for k, v in vars(self).items()}


def _sum_across_ranks(t: torch.Tensor, split: bool) -> torch.Tensor:
    if rank_world(split)[1] > 1:
        dist.all_reduce(t)
    return t


@torch.no_grad()
def encode_texts(model, tokenize: Tokenize, texts: Sequence[str], cfg: EvalConfig, device) -> tuple[torch.Tensor, ...]:
    """(tokens, mask, normalized projected cls) for all texts, in batches of `cfg.text_batch_size`."""
    if not texts:
        raise ValueError("no texts to encode")
    tokens, masks, feats = [], [], []
    starts = range(0, len(texts), cfg.text_batch_size)
    for s in tqdm(starts, desc="texts", disable=not cfg.progress or rank_world()[0] != 0):
        ids, mask = tokenize(list(texts[s : s + cfg.text_batch_size]))
        tok, cls = model.encode_text(ids.to(device), mask.to(device))
        tokens.append(tok.float().cpu())
        masks.append(mask.cpu())
        feats.append(F.normalize(model.text_proj(cls).float(), dim=-1).cpu())
    return torch.cat(tokens), torch.cat(masks), torch.cat(feats)


@torch.no_grad()
def encode_videos(
    model, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], num_videos: int, device, cfg: EvalConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(tokens, normalized per-frame features, ok mask) for `num_videos` videos.

    `batches` yields `(video (B,T,3,H,W), index (B,))`; under torch.distributed each rank passes its own shard and
    the rows are summed across ranks. Videos never yielded (skipped as undecodable) keep `ok=False`.
    """
    tokens = feats = None
    ok = torch.zeros(num_videos)
    rank = rank_world(cfg.split_across_ranks)[0]
    for video, index in tqdm(batches, desc="videos", disable=not cfg.progress or rank != 0):
        tok, pooled = model.encode_vision(video.to(device))
        feat = F.normalize(model.vision_proj(pooled).float(), dim=-1).cpu()
        if tokens is None:
            tokens = torch.zeros(num_videos, *tok.shape[1:])
            feats = torch.zeros(num_videos, *feat.shape[1:])
        tokens[index] = tok.float().cpu()
        feats[index] = feat
        ok[index] = 1
    if tokens is None:
        raise RuntimeError("no video could be encoded: every video was skipped or the loader was empty")
    split = cfg.split_across_ranks
    return _sum_across_ranks(tokens, split), _sum_across_ranks(feats, split), _sum_across_ranks(ok, split) > 0


def itc_scores(vision_feat: torch.Tensor, text_feat: torch.Tensor) -> torch.Tensor:
    """(N_v, N_t) mean over frames of per-frame cosine similarity (official `get_sim`, temp 1).

    The mean of per-frame dot products equals the dot product with the frame-averaged features.
    """
    return vision_feat.mean(1) @ text_feat.T


def dual_softmax(v2t: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Dual-softmax re-weighting: each query's scores times a softmax prior over the *other* axis."""
    t2v = v2t.T
    return v2t * F.softmax(v2t * scale, dim=0), t2v * F.softmax(t2v * scale, dim=0)


def rerank_pairs(v2t_itc: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-k candidates per video and per text: `(v2t_mask, t2v_mask, pairs)`; `pairs` (P, 2) holds each distinct
    (video, text) pair once, ordered by video, so the ITM head runs once per pair even when both directions pick it.
    """
    n_v, n_t = v2t_itc.shape
    v2t_mask = torch.zeros(n_v, n_t, dtype=torch.bool)
    v2t_mask.scatter_(1, v2t_itc.topk(min(k, n_t), dim=1).indices, True)
    t2v_mask = torch.zeros(n_t, n_v, dtype=torch.bool)
    t2v_mask.scatter_(1, v2t_itc.T.topk(min(k, n_v), dim=1).indices, True)
    pairs = (v2t_mask | t2v_mask.T).nonzero()
    return v2t_mask, t2v_mask, pairs


def last_token_position(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last unmasked token of each row (0 for an all-masked row)."""
    positions = torch.arange(mask.shape[1]).expand_as(mask)
    return torch.where(mask.bool(), positions, torch.zeros_like(positions)).amax(1)


@torch.no_grad()
def itm_scores(model, emb: Embeddings, pairs: torch.Tensor, cfg: EvalConfig, device) -> torch.Tensor:
    """ITM "match" logit (`itm_logits(...)[:, 1]`, no softmax) for each (video, text) pair.

    `pairs` must be ordered by video. Videos are taken in chunks of `cfg.itm_video_chunk` (split across ranks,
    scores summed); with `cfg.project_vision_once` each chunk's vision tokens go through the cross-attention
    projections once (`project_vision_for_itm`) and the last fusion layer runs for [CLS] only. Each video's
    pairs then run in batches of up to `cfg.itm_batch_size` texts, sharing the video's keys/values as a view,
    reusing the text-encoder tokens computed at encoding time, grouped by text length and cut to the longest
    text of the batch (padding is masked out, so the scores do not change).
    """
    if len(pairs) > 1 and bool((pairs[1:, 0] < pairs[:-1, 0]).any()):
        raise ValueError("itm_scores needs pairs ordered by video index")
    rank, world = rank_world(cfg.split_across_ranks)
    once = cfg.project_vision_once and hasattr(model, "project_vision_for_itm")
    scores = torch.zeros(len(pairs))
    text_lengths = last_token_position(emb.text_mask) + 1
    n_videos = emb.vision_tokens.shape[0]
    bounds = torch.searchsorted(pairs[:, 0].contiguous(), torch.arange(n_videos + 1)).tolist()
    starts = range(rank * cfg.itm_video_chunk, n_videos, world * cfg.itm_video_chunk)
    for v0 in tqdm(starts, desc="itm re-rank", disable=not cfg.progress or rank != 0):
        v1 = min(v0 + cfg.itm_video_chunk, n_videos)
        if bounds[v0] == bounds[v1]:
            continue
        chunk = emb.vision_tokens[v0:v1].to(device)
        chunk_kv = model.project_vision_for_itm(chunk) if once else None
        for v in range(v0, v1):  # one video per batch: its keys/values are shared, not copied per pair
            lo, hi = bounds[v], bounds[v + 1]
            order = lo + text_lengths[pairs[lo:hi, 1]].argsort(stable=True)  # similar lengths share a batch
            for s in range(0, hi - lo, cfg.itm_batch_size):
                rows = order[s : s + cfg.itm_batch_size]
                t = pairs[rows, 1]
                width = int(text_lengths[t].max())  # columns masked in every row change nothing
                tokens, mask = emb.text_tokens[t, :width].to(device), emb.text_mask[t, :width].to(device)
                share = lambda x: x[v - v0].expand(len(t), -1, -1)
                if once:
                    kv = [(share(key), share(value)) for key, value in chunk_kv]
                    logits = model.itm_logits(None, tokens, mask, vision_kv=kv, cls_only=True)
                else:
                    logits = model.itm_logits(share(chunk), tokens, mask)
                scores[rows] = logits[:, 1].float().cpu()
    return _sum_across_ranks(scores, cfg.split_across_ranks)


def rerank(model, emb: Embeddings, v2t_itc: torch.Tensor, cfg: EvalConfig, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Official re-ranked matrices `(v2t, t2v)`: ITM logit on the top-k candidates, -100 everywhere else."""
    v2t_mask, t2v_mask, pairs = rerank_pairs(v2t_itc, cfg.k_test)
    full = torch.full(v2t_itc.shape, ITM_FILL)
    full[pairs[:, 0], pairs[:, 1]] = itm_scores(model, emb, pairs, cfg, device)
    v2t = torch.where(v2t_mask, full, torch.tensor(ITM_FILL))
    t2v = torch.where(t2v_mask, full.T, torch.tensor(ITM_FILL))
    return v2t, t2v


def keep_decoded(
    txt2vid: Sequence[Sequence[int]], vid2txt: Sequence[Sequence[int]], video_ok: torch.Tensor
) -> tuple[list[int], list[int], list[list[int]], list[list[int]]]:
    """Drop undecodable videos and the texts left with no decodable ground truth; returns the kept video and text
    indices and the ground truths re-indexed into the kept sets."""
    videos = [v for v in range(len(vid2txt)) if bool(video_ok[v])]
    new_v = {v: i for i, v in enumerate(videos)}
    texts = [t for t in range(len(txt2vid)) if any(v in new_v for v in txt2vid[t])]
    new_t = {t: i for i, t in enumerate(texts)}
    t2v_gt = [[new_v[v] for v in txt2vid[t] if v in new_v] for t in texts]
    v2t_gt = [[new_t[t] for t in vid2txt[v] if t in new_t] for v in videos]
    return videos, texts, t2v_gt, v2t_gt


def evaluate(
    model,
    emb: Embeddings,
    txt2vid: Sequence[int | Sequence[int]],
    vid2txt: Sequence[int | Sequence[int]],
    cfg: EvalConfig,
    groups: Sequence[Sequence[int]] = (),
    device="cpu",
    group_kinds: Sequence[str] = (),
) -> dict[str, dict[str, float]]:
    """Metrics per score set (`emb`, `itm`, optionally `emb_dsl`), plus `temporal_acc` per set when `groups`
    (hard-negative groups of video indices) are given, and `temporal_acc_<kind>` per kind when `group_kinds`
    names each group's kind (e.g. reversed, swapped). Undecodable videos are left out (see `keep_decoded`)."""
    if group_kinds and len(group_kinds) != len(groups):
        raise ValueError(f"group_kinds has {len(group_kinds)} entries for {len(groups)} groups")
    videos, texts, t2v_gt, v2t_gt = keep_decoded(
        gt_lists(txt2vid, len(vid2txt), "txt2vid"), gt_lists(vid2txt, len(txt2vid), "vid2txt"), emb.video_ok
    )
    if not videos or not texts:
        raise RuntimeError("nothing to evaluate: no decodable video has a text")
    sub = Embeddings(
        emb.text_tokens[texts], emb.text_mask[texts], emb.text_feat[texts],
        emb.vision_tokens[videos], emb.vision_feat[videos],
    )
    new_v = {v: i for i, v in enumerate(videos)}
    kept = [([new_v[v] for v in g if v in new_v], kind) for g, kind in zip(groups, group_kinds or [None] * len(groups))]
    kept = [(g, kind) for g, kind in kept if len(g) >= 2]
    sub_groups = [g for g, _ in kept]

    v2t_itc = itc_scores(sub.vision_feat, sub.text_feat)
    matrices = {"emb": (v2t_itc, v2t_itc.T)}
    if cfg.dual_softmax:
        matrices["emb_dsl"] = dual_softmax(v2t_itc, cfg.dual_softmax_scale)
    if cfg.rerank:
        matrices["itm"] = rerank(model, sub, v2t_itc, cfg, device)

    results = {}
    for name, (v2t, t2v) in matrices.items():
        results[name] = retrieval_metrics(t2v, v2t, t2v_gt, v2t_gt)
        if sub_groups:
            results[name]["temporal_acc"] = temporal_accuracy(v2t, sub_groups, v2t_gt)
            for kind in sorted({k for _, k in kept if k}):
                of_kind = [g for g, k in kept if k == kind]
                results[name][f"temporal_acc_{kind}"] = temporal_accuracy(v2t, of_kind, v2t_gt)
    results["counts"] = {
        "videos": len(vid2txt), "videos_evaluated": len(videos),
        "texts": len(txt2vid), "texts_evaluated": len(texts), "hard_negative_groups": len(sub_groups),
    }
    return results
