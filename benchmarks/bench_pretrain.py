"""Training throughput (clips/s) of pretraining configurations, measured side by side in one process.

    .venv/bin/python benchmarks/bench_pretrain.py [--steps 4] [--batch 16]

Each variant runs full Trainer steps (forward, backward, AdamW) on random clips of the variant's shape, so
decoding is excluded; the first step (allocation, kernel build) is not timed. Ratios are against the first
variant, the demo configuration."""
from __future__ import annotations

import argparse
import time

import torch
from torch.utils.data import DataLoader, Dataset

from encoders.video_text import VideoTextConfig, build_video_text_model
from training.config import TrainConfig, merge
from training.loop import Trainer
from training.meta_loader import MetaLoader
from training.objective import UMTObjective
from training.sampler import ShardedBatchSampler

DEMO = {"embed_dim": 192, "depth": 8, "patch_size": 16, "img_size": 64, "num_frames": 8}
VARIANTS = {
    "demo: 64px p16 T8 d192x8, MiniLM frozen, VTC+VTM": (DEMO, {"freeze_text": True, "mlm": False}),
    "same, MiniLM trained": (DEMO, {"freeze_text": False, "mlm": False}),
    "same as demo, + MLM (demo_mlm.yaml)": (DEMO, {"freeze_text": True, "mlm": True}),
    "depth 12": ({**DEMO, "depth": 12}, {"freeze_text": True, "mlm": False}),
    "patch 8 (4x tokens)": ({**DEMO, "patch_size": 8}, {"freeze_text": True, "mlm": False}),
}


class RandomClips(Dataset):
    def __init__(self, n: int, frames: int, size: int):
        self.n, self.frames, self.size = n, frames, size

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(i)
        ids = torch.randint(1000, 20000, (32,), generator=g)
        ids[0] = 101
        return {"video": torch.randn(self.frames, 3, self.size, self.size, generator=g), "input_ids": ids,
                "attention_mask": torch.ones(32, dtype=torch.long), "idx": torch.tensor(i)}


def clips_per_second(vision: dict, text: dict, batch: int, steps: int) -> float:
    torch.manual_seed(0)
    model, _ = build_video_text_model(VideoTextConfig(vision_model="videomamba_test_tiny", vision_overrides=vision,
                                                      embed_dim=256, **text))
    data = RandomClips(batch * (steps + 1), vision["num_frames"], vision["img_size"])
    loader = MetaLoader({"video": DataLoader(data, batch_sampler=ShardedBatchSampler(len(data), batch))})
    cfg = merge(TrainConfig(), {"output_dir": "/tmp/pretrain_throughput", "optim": {"max_steps": steps + 1},
                                "loss": {"mlm": 1.0 if text["mlm"] else 0.0}})
    trainer = Trainer(UMTObjective(model, cfg.objective), loader, cfg, progress=False)
    batches = [b for _, b in loader.epoch(0)]
    trainer.train_step(batches[0])
    started = time.perf_counter()
    for b in batches[1:]:
        trainer.train_step(b)
    return batch * steps / (time.perf_counter() - started)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--batch", type=int, default=16)
    args = p.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, {args.steps} timed steps")
    base = None
    for name, (vision, text) in VARIANTS.items():
        rate = clips_per_second(vision, text, args.batch, args.steps)
        base = base or rate
        print(f"{name:52s} {rate:7.2f} clips/s   x{rate / base:.2f}")


if __name__ == "__main__":
    main()
