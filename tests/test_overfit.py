"""The joint model can learn: a tiny VideoMamba + MiniLM (2 fusion layers) memorises 16 synthetic clips.

Slow on purpose (it trains); it stops as soon as both targets are met, at most 200 steps.
"""
import numpy as np
import pytest
import torch

from encoders.video_text import VideoTextConfig, build_video_text_model, make_tokenize
from media import normalize
from training.objective import UMTObjective
from retrieval.synth.caption import caption
from retrieval.synth.render import render_frames
from retrieval.synth.scene import sample_scene

NUM_CLIPS, FRAMES, SIZE, MAX_STEPS = 16, 4, 32, 200


def synthetic_clips(seed: int = 0) -> tuple[torch.Tensor, list[str]]:
    """16 clips with distinct captions from the synthetic corpus generator, ImageNet-normalised (B, T, 3, H, W)."""
    rng = np.random.default_rng(seed)
    videos, captions = [], []
    while len(videos) < NUM_CLIPS:
        scene = sample_scene(rng, num_events=1)
        text = caption(scene)
        if text in captions:
            continue
        frames = torch.from_numpy(render_frames(scene, FRAMES, SIZE)).permute(0, 3, 1, 2).float()
        videos.append(normalize(frames))
        captions.append(text)
    return torch.stack(videos), captions


def text_to_video_r1(model, video, ids, mask) -> float:
    model.eval()
    with torch.no_grad():
        v = model.vision_embedding(video).mean(1)
        t = model.text_embedding(ids, mask)
    model.train()
    return ((t @ v.T).argmax(1) == torch.arange(len(t))).float().mean().item()


@pytest.mark.slow
def test_tiny_joint_model_overfits_16_clips():
    torch.manual_seed(0)
    video, captions = synthetic_clips()
    assert len(set(captions)) == NUM_CLIPS
    cfg = VideoTextConfig(vision_model="videomamba_test_tiny", text_encoder="minilm", fusion_layers=2,
                          freeze_text=True, text_dropout=0.0, max_txt_len=24)
    model, tokenizer = build_video_text_model(cfg)
    ids, mask = make_tokenize(tokenizer, cfg.max_txt_len)(captions)
    length = int(mask.sum(1).max())
    ids, mask = ids[:, :length], mask[:, :length]
    objective = UMTObjective(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.0)
    generator = torch.Generator().manual_seed(0)

    start = r1 = total = None
    for step in range(MAX_STEPS):
        losses = objective(video, ids, mask, stage=2, generator=generator)
        assert set(losses) == {"loss_vtc", "loss_vtm", "loss_mlm"}
        loss = sum(losses.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total = loss.item()
        start = total if start is None else start
        if step % 5 == 4 and total < start / 4:
            r1 = text_to_video_r1(model, video, ids, mask)
            if r1 == 1.0:
                break
    assert total < start / 4, f"loss {total:.3f} did not fall below a quarter of its start {start:.3f}"
    assert text_to_video_r1(model, video, ids, mask) == 1.0
