"""UMT objectives: video–text contrast (VTC), matching with hard negatives (VTM), masked language modelling
(MLM) and unmasked token alignment to a teacher (UTA)."""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

UTA_NORM_TYPES = ("l2", "none")
UTA_LOSS_TYPES = ("l2", "mse", "smooth_l1")


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums the incoming gradient over ranks and returns this rank's slice.

    Every rank's loss depends on every rank's features; summing gives this rank's features their gradient from
    all ranks' losses, so after DDP averages parameter gradients the result equals the single-process gradient
    on the concatenated batch (returning only the local slice would give 1/world_size of it). Works on gloo.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.rank, ctx.batch = dist.get_rank(), x.shape[0]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, 0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.batch : (ctx.rank + 1) * ctx.batch]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` over processes along dim 0 keeping the gradient path; identity outside torch.distributed."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return _GatherWithGrad.apply(x)
    return x


def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, 0)
    return x


def similarity(vision_feat: torch.Tensor, text_feat: torch.Tensor, temp: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
    """(sim_v2t, sim_t2v) of L2-normalised features divided by `temp`.

    vision_feat is (Nv, E) or (Nv, T, E); with frames the per-frame similarities are averaged (official `get_sim`).
    """
    v = F.normalize(vision_feat.float(), dim=-1)
    t = F.normalize(text_feat.float(), dim=-1)
    if v.dim() == 3:
        sim = torch.einsum("vfe,te->vft", v, t).mean(1)
    elif v.dim() == 2:
        sim = v @ t.T
    else:
        raise ValueError(f"vision features must be (N, E) or (N, T, E), got shape {tuple(vision_feat.shape)}")
    sim = sim / temp
    return sim, sim.T


def vtc_loss(vision_feat: torch.Tensor, text_feat: torch.Tensor, temp: torch.Tensor | float,
             idx: torch.Tensor | None = None) -> torch.Tensor:
    """Contrastive loss with multi-positive soft targets: pairs whose sample ids match are all positives.

    Features are gathered across processes with gradient; loss = mean of the v2t and t2v soft cross-entropies.
    """
    if vision_feat.shape[0] != text_feat.shape[0]:
        raise ValueError(f"VTC needs as many videos as texts, got {vision_feat.shape[0]} and {text_feat.shape[0]}")
    if idx is None:
        idx = torch.arange(vision_feat.shape[0], device=vision_feat.device)
    vision_all, text_all = gather_with_grad(vision_feat), gather_with_grad(text_feat)
    idx_all = gather_no_grad(idx.view(-1))
    sim_v2t, sim_t2v = similarity(vision_all, text_all, temp)
    pos = (idx_all[:, None] == idx_all[None, :]).float()
    targets = pos / pos.sum(1, keepdim=True)
    loss_v2t = -(F.log_softmax(sim_v2t, dim=1) * targets).sum(1).mean()
    loss_t2v = -(F.log_softmax(sim_t2v, dim=1) * targets).sum(1).mean()
    return (loss_v2t + loss_t2v) / 2


@torch.no_grad()
def sample_hard_negatives(sim_v2t: torch.Tensor, idx: torch.Tensor,
                          generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One hard negative text per video and one hard negative video per text, drawn by `torch.multinomial`.

    Weights are `softmax(sim) + 1e-4` (so every negative stays drawable) with same-id entries set to zero,
    so a positive is never drawn. Returns (neg_text_for_video (B,), neg_video_for_text (B,)).
    """
    same = idx.view(-1, 1) == idx.view(1, -1)
    if same.all(1).any():
        raise ValueError("VTM hard negatives need, for every sample, another sample with a different id in the batch")
    w_v2t = (F.softmax(sim_v2t.float(), dim=1) + 1e-4).masked_fill(same, 0)
    w_t2v = (F.softmax(sim_v2t.T.float(), dim=1) + 1e-4).masked_fill(same, 0)
    w_v2t, w_t2v = (torch.nan_to_num(w, nan=1e-2, posinf=1e-2, neginf=1e-2).masked_fill(same, 0) for w in (w_v2t, w_t2v))
    neg_text = torch.multinomial(w_v2t, 1, generator=generator).squeeze(1)
    neg_video = torch.multinomial(w_t2v, 1, generator=generator).squeeze(1)
    return neg_text, neg_video


def vtm_pairs(sim_v2t: torch.Tensor, idx: torch.Tensor, hard_negatives: bool = True,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Indices of the 3B matching pairs `[positives | (neg video, text) | (video, neg text)]` and labels.

    Returns (video_index (3B,), text_index (3B,), labels (3B,) = [1]*B + [0]*2B). Without hard negatives the
    negatives are drawn uniformly among the other ids.
    """
    B = sim_v2t.shape[0]
    scores = sim_v2t if hard_negatives else torch.zeros_like(sim_v2t)
    neg_text, neg_video = sample_hard_negatives(scores, idx, generator)
    ar = torch.arange(B, device=sim_v2t.device)
    video_index = torch.cat([ar, neg_video, ar])
    text_index = torch.cat([ar, ar, neg_text])
    labels = torch.cat([torch.ones(B, dtype=torch.long), torch.zeros(2 * B, dtype=torch.long)]).to(sim_v2t.device)
    return video_index, text_index, labels


def vtm_loss(itm_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """2-way cross-entropy of the ITM head."""
    return F.cross_entropy(itm_logits.float(), labels)


def mask_tokens_for_mlm(input_ids: torch.Tensor, vocab_size: int, mask_token_id: int, special_ids: list[int],
                        prob: float = 0.5, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: each non-special token is chosen with `prob`; of those 80 % → [MASK], 10 % → a random token,
    10 % unchanged. Special tokens (padding, [CLS], [SEP]) are never chosen. Returns (masked_ids, labels) with
    labels -100 where not chosen."""
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"MLM masking probability must be in [0, 1], got {prob}")
    device = input_ids.device
    rand = lambda: torch.rand(input_ids.shape, generator=generator, device=device)
    special = torch.isin(input_ids, torch.tensor(special_ids, device=device))
    chosen = (rand() < prob) & ~special
    labels = input_ids.masked_fill(~chosen, -100)
    draw = rand()
    to_mask = chosen & (draw < 0.8)
    to_random = chosen & (draw >= 0.8) & (draw < 0.9)
    random_tokens = torch.randint(vocab_size, input_ids.shape, generator=generator, device=device)
    masked = input_ids.masked_fill(to_mask, mask_token_id)
    masked = torch.where(to_random, random_tokens, masked)
    return masked, labels


def mlm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over chosen tokens; zero (with gradient path) when nothing was chosen."""
    if (labels != -100).sum() == 0:
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)


def uta_loss(student: torch.Tensor, teacher: torch.Tensor, norm_type: str = "l2", loss_type: str = "l2") -> torch.Tensor:
    """Align student decoder outputs with teacher features at the same (visible) positions.

    norm "l2" normalises both; loss "l2" is mean(2 − 2·cos) (= squared distance of unit vectors), "mse" and
    "smooth_l1" are the element-wise losses.
    """
    if student.shape != teacher.shape:
        raise ValueError(f"UTA student {tuple(student.shape)} and teacher {tuple(teacher.shape)} shapes differ")
    if norm_type not in UTA_NORM_TYPES:
        raise ValueError(f"uta norm_type must be one of {UTA_NORM_TYPES}, got {norm_type!r}")
    s, t = student.float(), teacher.float()
    if norm_type == "l2":
        s, t = F.normalize(s, dim=-1), F.normalize(t, dim=-1)
    if loss_type == "l2":
        return (2 - 2 * (s * t).sum(-1)).mean()
    if loss_type == "mse":
        return F.mse_loss(s, t)
    if loss_type == "smooth_l1":
        return F.smooth_l1_loss(s, t)
    raise ValueError(f"uta loss_type must be one of {UTA_LOSS_TYPES}, got {loss_type!r}")
