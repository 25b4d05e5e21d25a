"""Two CPU processes under torchrun (gloo): after a few DDP steps both ranks hold identical weights, and the
first step's gradient equals a single-process step on the concatenated batch. Weights are not compared with the
single process after the steps: AdamW divides by sqrt(v), so float noise in near-zero gradient entries turns
into whole-step differences (measured: 2.6e-3 on one entry after 3 steps at lr 1e-2).

Why this comparison is exact: the single process uses batch 2B from the same (seed, epoch) permutation, which
is rank 0's slice followed by rank 1's slice (ShardedBatchSampler cuts global batches contiguously). VTC
gathers features across ranks with gradient, so every rank computes the loss over the full 2B batch. The
losses that draw random numbers (VTM hard negatives, MLM masking) and dropout would differ between one and
two processes, so the compared runs use VTC only (other weights 0, dropout 0): a deterministic setting.

Run as a script (`torchrun ... tests/test_distributed.py OUT KIND`) it is the worker of that test."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_training import ToyClips, tiny_video_text, toy_config  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from training.losses import vtc_loss  # noqa: E402
from retrieval.distributed import DistInfo, cleanup, init_distributed  # noqa: E402
from training.sampler import ShardedBatchSampler  # noqa: E402
from training.loop import Trainer, unwrap  # noqa: E402
from training.meta_loader import MetaLoader  # noqa: E402
from training.seeded import SeededDataset  # noqa: E402

STEPS, BATCH, SEED = 3, 3, 11


class ToyContrastive(nn.Module):
    """Linear video and text towers trained with the real VTC loss (all-gather with gradient)."""

    def __init__(self, vocab: int = 128, dim: int = 8):
        super().__init__()
        self.video = nn.Linear(3 * 4 * 4, dim)
        self.text = nn.Embedding(vocab, dim)
        self.temp = nn.Parameter(torch.tensor(0.07))

    def forward(self, video, input_ids, attention_mask, idx, stage=2):
        v = self.video(video.flatten(2)).mean(1)
        t = (self.text(input_ids) * attention_mask[..., None]).sum(1) / attention_mask.sum(1, keepdim=True)
        return {"loss_vtc": vtc_loss(v, t, self.temp, idx)}


def build(kind: str) -> nn.Module:
    torch.manual_seed(0)
    if kind == "toy":
        return ToyContrastive()
    if kind == "umt":
        return tiny_video_text(dropout=False)
    raise ValueError(f"unknown model kind {kind!r}")


def train(out: Path, kind: str, dist_info: DistInfo, batch: int) -> dict:
    data = SeededDataset(ToyClips(n=24, frames=4, size=32) if kind == "umt" else ToyClips(n=24), seed=SEED)
    sampler = ShardedBatchSampler(len(data), batch, dist_info.rank, dist_info.world_size, seed=SEED)
    cfg = toy_config(out, max_steps=STEPS)
    cfg.data.batch_size = batch
    merge_loss = {"vtc": 1.0, "vtm": 0.0, "mlm": 0.0, "uta": 0.0}
    for key, value in merge_loss.items():
        setattr(cfg.loss, key, value)
    trainer = Trainer(build(kind), MetaLoader({"video": DataLoader(data, batch_sampler=sampler)}, seed=SEED),
                      cfg, dist_info, progress=False)
    first_grads = {}
    step = trainer.train_step

    def recording_step(b):
        values = step(b)
        if not first_grads:
            first_grads.update({n: p.grad.clone() for n, p in unwrap(trainer.model).named_parameters()
                                if p.grad is not None})
        return values

    trainer.train_step = recording_step
    state = trainer.fit()
    return {"grads": first_grads, "weights": unwrap(trainer.model).state_dict(),
            "losses": [h["loss"] for h in state.history]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("kind", ["toy", "umt"])
def test_two_ranks_match_single_process(tmp_path, kind):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(free_port()), __file__, str(tmp_path), kind]
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=root, env=env)
    assert done.returncode == 0, done.stderr[-4000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for name, w0 in ranks[0]["weights"].items():
        assert torch.equal(w0, ranks[1]["weights"][name]), f"ranks disagree on {name}"
    assert ranks[0]["losses"] == ranks[1]["losses"]  # VTC is computed over the gathered global batch

    single = train(tmp_path / "single", kind, DistInfo(), batch=2 * BATCH)
    assert ranks[0]["losses"] == pytest.approx(single["losses"], rel=1e-5)
    assert set(ranks[0]["grads"]) == set(single["grads"]) and len(single["grads"]) > 3
    for name, g in single["grads"].items():
        torch.testing.assert_close(ranks[0]["grads"][name], g, rtol=1e-3, atol=1e-5,
                                   msg=f"DDP gradient of {name} differs from the single-process gradient")
    assert (tmp_path / "checkpoints").is_dir() and (tmp_path / "train.log").is_file()
    assert not list(tmp_path.glob("rank1*/train.log"))


if __name__ == "__main__":
    out_dir, model_kind = Path(sys.argv[1]), sys.argv[2]
    info = init_distributed("cpu")
    try:
        result = train(out_dir, model_kind, info, batch=BATCH)
        torch.save(result, out_dir / f"rank{info.rank}.pt")
    finally:
        cleanup()
