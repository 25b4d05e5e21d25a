"""Loop mechanics: config, optimizer groups, schedule, sampler, MetaLoader, seeding, checkpoints, Trainer.

`ToyVideoText` is a deliberately small stand-in with the VideoTextModel calling convention (it uses
dropout and draws random numbers in forward, so RNG handling is exercised); the real model is covered
in test_distributed.py and test_resume.py."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from training.checkpointing import Checkpointer
from training.config import ConfigError, TrainConfig, load_config, merge, parse_override
from training.sampler import ShardedBatchSampler
from training.loop import Trainer, weighted_total
from training.meta_loader import MetaLoader
from training.optim import CosineWarmup, build_optimizer, param_groups
from training.seeded import SeededDataset


class ToyClips(Dataset):
    """Random-offset 'rand' sampling from a fixed tensor per item, like a clip sampler would.
    Token ids 1..19 are [unusedN] in the BERT vocabulary: valid and never special."""

    def __init__(self, n: int = 16, frames: int = 2, size: int = 4, vocab: int = 20):
        g = torch.Generator().manual_seed(0)
        self.frames, self.vocab = frames, vocab
        self.source = torch.randn(n, frames + 2, 3, size, size, generator=g)
        self.ids = torch.randint(1, vocab, (n, 5), generator=g)
        self.ids[:, 0] = 101  # [CLS]

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> dict:
        start = int(torch.randint(0, 3, ()))
        return {"video": self.source[i, start:start + self.frames], "input_ids": self.ids[i],
                "attention_mask": torch.ones(5, dtype=torch.long), "idx": torch.tensor(i)}


class ToyVideoText(nn.Module):
    def __init__(self, vocab: int = 128, dim: int = 8):
        super().__init__()
        self.video = nn.Sequential(nn.Flatten(2), nn.Linear(3 * 4 * 4, dim))
        self.text = nn.Embedding(vocab, dim)
        self.drop = nn.Dropout(0.2)
        self.head = nn.Linear(dim, vocab)
        self.pos_embed = nn.Parameter(torch.zeros(1, dim))
        self.temp = nn.Parameter(torch.tensor(0.07))

    def forward(self, video, input_ids, attention_mask, idx, stage=2):
        v = self.drop(self.video(video).mean(1)) + self.pos_embed
        t = (self.text(input_ids) * attention_mask[..., None]).sum(1) / attention_mask.sum(1, keepdim=True)
        vtc = (1 - torch.cosine_similarity(v, t, dim=-1)).mean() / self.temp.clamp(min=0.05) * 0.07
        noisy = v + 0.01 * torch.randn_like(v)
        mlm = nn.functional.cross_entropy(self.head(noisy), input_ids[:, 1])
        return {"loss_vtc": vtc, "loss_mlm": mlm}


def tiny_video_text(dropout: bool = True) -> nn.Module:
    """The UMT objective over the real VideoTextModel at test size: videomamba_test_tiny (4 frames of 32x32) + MiniLM
    with 2 fusion layers."""
    from encoders.video_text import VideoTextConfig, build_video_text_model
    from training.objective import UMTObjective

    model, _ = build_video_text_model(VideoTextConfig(vision_model="videomamba_test_tiny", text_encoder="minilm",
                                                      fusion_layers=2, embed_dim=16))
    if not dropout:  # nn.Dropout modules and the attention's functional dropout probability
        for module in model.modules():
            if isinstance(module, nn.Dropout):
                module.p = 0.0
            elif isinstance(getattr(module, "dropout", None), float):
                module.dropout = 0.0
    return UMTObjective(model)


def toy_loader(seed: int = 0, batch: int = 4, rank: int = 0, world: int = 1, n: int = 16,
               frames: int = 2, size: int = 4) -> MetaLoader:
    data = SeededDataset(ToyClips(n=n, frames=frames, size=size), seed=seed)
    sampler = ShardedBatchSampler(len(data), batch, rank=rank, world_size=world, seed=seed)
    return MetaLoader({"video": DataLoader(data, batch_sampler=sampler)}, seed=seed)


def toy_config(tmp_path, **optim) -> TrainConfig:
    cfg = TrainConfig()
    merge(cfg, {"output_dir": str(tmp_path), "save_every": 3, "log_every": 1, "data": {"batch_size": 4},
                "optim": {"lr": 1e-2, "warmup_epochs": 0.25, "epochs": 2.0, **optim},
                "loss": {"vtc": 1.0, "mlm": 0.5, "vtm": 0.0, "uta": 0.0}})
    return cfg


# ---- config ---------------------------------------------------------------------------------------
def test_config_layers_stage_defaults_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("stage: 1\ndata: {name: synth, batch_size: 2}\noptim: {warmup_epochs: 0.5}\n")
    cfg = load_config(str(path), overrides=[parse_override("optim.lr=2e-4"), parse_override("bf16=false")])
    assert cfg.stage == 1 and cfg.loss.uta == 1.0 and cfg.optim.epochs == 10.0  # official stage-1 schedule
    assert cfg.data.name == "synth" and cfg.data.batch_size == 2 and cfg.optim.warmup_epochs == 0.5
    assert cfg.optim.lr == 2e-4 and cfg.bf16 is False
    assert load_config(stage=2).optim.lr == 8e-5 and load_config(stage=2).loss.uta == 0.0


def test_config_rejects_bad_keys_and_values(tmp_path):
    with pytest.raises(ConfigError, match="optim.lrr"):
        load_config(overrides=[parse_override("optim.lrr=1")])
    with pytest.raises(ValueError, match="data.name"):
        load_config(overrides=[parse_override("data.name=kinetics")])
    with pytest.raises(ValueError, match="data.batch_size"):
        load_config(overrides=[parse_override("data.batch_size=2.5")])
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_config(str(tmp_path / "nope.yaml"))
    (tmp_path / "typo.yaml").write_text("optim: {lr: 1.0e-4, epochs: 1}\ndata: {batch_sise: 2}\n")
    with pytest.raises(ConfigError, match=r"typo.yaml.*unknown config key 'data.batch_sise'; valid here: .*batch_size"):
        load_config(str(tmp_path / "typo.yaml"))
    with pytest.raises(ConfigError, match="'optim.lr' expects a float, got 'fast'"):
        load_config(overrides=[parse_override("optim.lr=fast")])


# ---- optimizer and schedule -----------------------------------------------------------------------
def test_weight_decay_exclusions():
    model = nn.Module()
    model.proj = nn.Linear(4, 4)
    model.pos_embed = nn.Parameter(torch.zeros(1, 3, 4))
    model.cls_token = nn.Parameter(torch.zeros(1, 1, 4))
    model.temporal_pos_embedding = nn.Parameter(torch.zeros(1, 2, 4))
    mixer = nn.Module()
    mixer.A_log = nn.Parameter(torch.zeros(4, 2))
    mixer.D = nn.Parameter(torch.ones(4))
    mixer.in_proj = nn.Linear(4, 8, bias=False)
    model.mixer = mixer
    decay, no_decay = param_groups(model, 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(model.proj.weight), id(mixer.in_proj.weight)}
    assert len(no_decay["params"]) == 6


def test_cosine_warmup_shape_and_resume():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = CosineWarmup(opt, total_steps=10, warmup_steps=2, min_lr_ratio=0.1)
    lrs = [sched.get_last_lr()[0]]
    for _ in range(10):
        sched.step()
        lrs.append(sched.get_last_lr()[0])
    assert lrs[0] < lrs[1] < lrs[2] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[2:], lrs[3:]))
    assert lrs[10] == pytest.approx(0.1)
    opt2 = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    restored = CosineWarmup(opt2, total_steps=10, warmup_steps=2, min_lr_ratio=0.1)
    restored.load_state_dict({**sched.state_dict(), "step_count": 5})
    assert restored.get_last_lr()[0] == pytest.approx(lrs[5])


# ---- data order -----------------------------------------------------------------------------------
def test_sharded_sampler_partitions_and_resumes():
    ranks = [ShardedBatchSampler(22, 3, rank=r, world_size=2, seed=1) for r in range(2)]
    for s in ranks:
        s.set_epoch(4)
    batches = [list(s) for s in ranks]
    assert len(batches[0]) == len(batches[1]) == 3  # 22 // 6, last partial global batch dropped
    seen = [i for per_rank in batches for b in per_rank for i in b]
    assert len(seen) == len(set(seen)) == 18
    ranks[0].set_epoch(4, start_batch=2)
    assert list(ranks[0]) == batches[0][2:]
    ranks[0].set_epoch(5)
    assert list(ranks[0]) != batches[0]
    with pytest.raises(ValueError, match="smaller than one global batch"):
        ShardedBatchSampler(5, 3, world_size=2)


def test_grouped_sampler_keeps_hard_negative_groups_adjacent():
    groups = [None, "a", None, "b", "a", None, "b", None, "c", "c", None, None, "d", "d", None, None]
    sampler = ShardedBatchSampler(len(groups), 4, seed=7, groups=groups)
    for epoch in range(5):
        sampler.set_epoch(epoch)
        order = [i for batch in sampler.global_batches() for i in batch]
        assert sorted(order) == list(range(16))  # 16 = 4 full batches: nothing dropped, nothing repeated
        for g in "abcd":
            at = [order.index(i) for i, x in enumerate(groups) if x == g]
            assert at[1] - at[0] == 1  # a group's clips are neighbours in every epoch
    sampler.set_epoch(1)
    first = [i for batch in sampler.global_batches() for i in batch]
    sampler.set_epoch(2)
    assert [i for batch in sampler.global_batches() for i in batch] != first
    with pytest.raises(ValueError, match="groups has 3 entries"):
        ShardedBatchSampler(16, 4, groups=[None] * 3)


def test_meta_loader_interleaves_and_resumes():
    images = SeededDataset(ToyClips(n=12), seed=3)
    videos = SeededDataset(ToyClips(n=8), seed=3)
    loader = MetaLoader({"video": DataLoader(videos, batch_sampler=ShardedBatchSampler(8, 2, seed=3)),
                         "image": DataLoader(images, batch_sampler=ShardedBatchSampler(12, 3, seed=3))}, seed=3)
    full = list(loader.epoch(1))
    assert len(full) == len(loader) == 8
    assert sorted(n for n, _ in full) == ["image"] * 4 + ["video"] * 4
    assert [n for n, _ in full] == loader.order(1) != loader.order(2)
    resumed = list(loader.epoch(1, start=5))
    assert [n for n, _ in resumed] == [n for n, _ in full[5:]]
    for (_, a), (_, b) in zip(resumed, full[5:]):
        assert torch.equal(a["idx"], b["idx"]) and torch.equal(a["video"], b["video"])


def test_seeded_dataset_is_deterministic_and_leaves_global_rng():
    data = SeededDataset(ToyClips(), seed=7)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    first = [data[i]["video"] for i in range(6)]
    assert torch.equal(torch.get_rng_state(), before)
    again = [data[i]["video"] for i in reversed(range(6))][::-1]
    assert all(torch.equal(a, b) for a, b in zip(first, again))


# ---- checkpoints ----------------------------------------------------------------------------------
def test_checkpointer_keeps_last_k_and_leaves_no_temp(tmp_path):
    ck = Checkpointer(tmp_path, keep_last=2)
    for step in (1, 2, 3):
        ck.save({"step": step, "w": torch.full((2,), float(step))}, step)
    assert [p.name for p in ck.list()] == ["checkpoint_00000002.pt", "checkpoint_00000003.pt"]
    assert Checkpointer.load(ck.latest())["w"].tolist() == [3.0, 3.0]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    with pytest.raises(FileNotFoundError, match="checkpoint_00000009"):
        Checkpointer.load(ck.path_for(9))


# ---- the loop -------------------------------------------------------------------------------------
def test_weighted_total_rejects_unknown_loss():
    with pytest.raises(KeyError, match="loss_foo"):
        weighted_total({"loss_foo": torch.tensor(1.0)}, {"vtc": 1.0})


def test_trainer_runs_epochs_logs_evaluates_and_checkpoints(tmp_path):
    torch.manual_seed(0)
    cfg = toy_config(tmp_path)
    seen_epochs = []
    trainer = Trainer(ToyVideoText(), toy_loader(), cfg, progress=False,
                      evaluate=lambda model, epoch: seen_epochs.append(epoch) or {"r1": 0.5})
    state = trainer.fit()
    assert state.step == 8 and state.epoch == 2 and state.pos == 0  # 2 epochs of 16 // 4 steps
    assert seen_epochs == [0, 1]
    losses = [h["loss"] for h in state.history]
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
    assert [p.name for p in trainer.checkpointer.list()][-1] == "checkpoint_00000008.pt"
    log = (tmp_path / "train.log").read_text()
    assert "step 8" in log and "clips/s" in log and "eval r1=0.5" in log
    assert any((tmp_path / "tensorboard").iterdir())
    lrs = trainer.optimizer.param_groups[0]["lr"]
    assert lrs == pytest.approx(1e-2 * 0.01)  # cosine ends at min_lr_ratio


def test_trainer_clips_gradients_and_reports_norm(tmp_path):
    cfg = toy_config(tmp_path, max_grad_norm=1e-3, max_steps=2)
    state = Trainer(ToyVideoText(), toy_loader(), cfg, progress=False).fit()
    assert state.step == 2 and all("grad_norm" in h for h in state.history)


def test_optimizer_builder_uses_betas():
    opt = build_optimizer(ToyVideoText(), 1e-3, 0.1, (0.9, 0.95))
    assert opt.param_groups[0]["betas"] == (0.9, 0.95)


# ---- end to end -----------------------------------------------------------------------------------
def test_pretrain_cli_trains_on_synthetic_corpus_and_reports_exactly_the_bad_files(tmp_path):
    """`python -m training.pretrain --data synth` on a generated corpus where one video is corrupt, one is
    empty and one is missing: it trains (fixed batch size, bad files replaced) and reports those three."""
    import json

    from retrieval.synth.writer import SynthConfig, generate
    from training.checkpointing import Checkpointer
    from training.pretrain import main

    root = tmp_path / "corpus"
    generate(SynthConfig.tiny(str(root)), progress=False)
    records = json.loads((root / "anno_pretrain" / "webvid_train.json").read_text())
    videos = [root / "WebVid" / r["video"] for r in records]
    videos[1].write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 20)
    videos[5].write_bytes(b"")
    videos[9].unlink()
    out = tmp_path / "run"
    main(["--data", "synth", "--data-root", str(root), "--output", str(out), "--batch-size", "4",
          "--max-steps", "3", "--workers", "0", "--no-progress", "--set", "data.num_frames=4",
          "--set", "data.image_size=32", "--set", "save_every=2", "--set", "log_every=1",
          "--set", "model.video_text={vision_model: videomamba_test_tiny, text_layers: 2, embed_dim: 16}"])
    reported = (out / "skipped.txt").read_text()
    assert "skipped 3 bad file(s)" in reported
    for bad in (videos[1], videos[5], videos[9]):
        assert str(bad) in reported
    assert sum(str(v) in reported for v in videos) == 3
    assert Checkpointer.load(Checkpointer(out / "checkpoints").latest())["step"] == 3
    log = (out / "train.log").read_text()
    assert "step 3" in log and "vtc=" in log and "mlm=" in log
    assert (out / "model" / "model.safetensors").is_file()


def test_init_from_takes_the_weights_from_the_model_and_how_to_train_from_the_config(tmp_path):
    from encoders.video_text import VideoTextConfig, build_video_text_model, save_pretrained
    from training.pretrain import build_model

    saved = VideoTextConfig(vision_model="videomamba_test_tiny", text_layers=2, embed_dim=16, freeze_text=True,
                            mlm=False)
    model, _ = build_video_text_model(saved)
    save_pretrained(model, str(tmp_path / "init"), only_changed=True)
    cfg = TrainConfig()
    merge(cfg, {"data": {"num_frames": 4, "image_size": 32}, "loss": {"mlm": 1.0},
                "model": {"init_from": str(tmp_path / "init"),
                          "video_text": {"freeze_text": True, "trainable_text_layers": 1, "mlm": True,
                                         "embed_dim": 999}}})
    loaded, _ = build_model(cfg)
    assert loaded.cfg.trainable_text_layers == 1 and loaded.cfg.mlm
    assert loaded.cfg.embed_dim == 16  # what the weights are comes from the saved model
    layers = loaded.text_bert.encoder.layer
    assert not any(p.requires_grad for p in layers[0].parameters())
    assert all(p.requires_grad for p in layers[1].parameters())
    ref = model.state_dict()
    assert all(torch.equal(v, ref[k.replace("text_encoder.bert.", "text_encoder.", 1)])
               for k, v in loaded.state_dict().items() if not k.startswith("text_encoder.cls."))
