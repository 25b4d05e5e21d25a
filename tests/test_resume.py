"""Exact resume: 2N steps straight through == N steps, stop, new process state, resume for N more
(same data order, same losses, same weights), including a stop in the middle of an epoch."""
from __future__ import annotations

import pytest
import torch

from test_training import ToyVideoText, tiny_video_text, toy_config, toy_loader
from training.loop import Trainer


def run(tmp_path, stop_after=None, resume=False, kind="toy"):
    torch.manual_seed(123)  # same init in both runs; resume overwrites everything that matters after it
    cfg = toy_config(tmp_path, epochs=2.0)
    cfg.save_every = 100
    if kind == "toy":
        model, loader = ToyVideoText(), toy_loader(seed=5)
    else:  # the real model with dropout, VTM hard-negative sampling and MLM masking all drawing random numbers
        model, loader = tiny_video_text(), toy_loader(seed=5, frames=4, size=32)
        cfg.loss.vtm = cfg.loss.mlm = 1.0
    trainer = Trainer(model, loader, cfg, progress=False)
    if resume:
        torch.manual_seed(999)  # a fresh process would have arbitrary RNG state before resuming
        assert trainer.resume()
    state = trainer.fit(stop_after=stop_after)
    return trainer, state


@pytest.mark.parametrize("kind,stop", [("toy", 3), ("toy", 4), ("umt", 3)])  # mid-epoch and at the epoch end
def test_resume_matches_uninterrupted_run(tmp_path, kind, stop):
    full, full_state = run(tmp_path / "full", kind=kind)
    first, first_state = run(tmp_path / "split", stop_after=stop, kind=kind)
    assert first_state.step == stop and first.checkpointer.latest().name == f"checkpoint_{stop:08d}.pt"
    second, second_state = run(tmp_path / "split", resume=True, kind=kind)
    assert second_state.step == full_state.step == 8
    full_losses = [h["loss"] for h in full_state.history]
    split_losses = [h["loss"] for h in first_state.history] + [h["loss"] for h in second_state.history]
    assert split_losses == pytest.approx(full_losses, rel=1e-6, abs=1e-7)
    for (name, a), (_, b) in zip(full.model.state_dict().items(), second.model.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=f"parameter {name} differs after resume")
    assert second.optimizer.param_groups[0]["lr"] == pytest.approx(full.optimizer.param_groups[0]["lr"])


def test_resume_with_a_shorter_schedule_ends_there_at_the_floor(tmp_path):
    run(tmp_path, stop_after=3)
    cfg = toy_config(tmp_path, epochs=2.0)
    cfg.optim.max_steps = 5
    trainer = Trainer(ToyVideoText(), toy_loader(seed=5), cfg, progress=False)
    assert trainer.resume() and trainer.scheduler.total_steps == 5
    assert trainer.fit().step == 5
    floor = cfg.optim.min_lr_ratio * cfg.optim.lr
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(floor)
    assert "schedule changed on resume: 5 total" in (tmp_path / "train.log").read_text()


def test_resume_refuses_a_different_batch_size(tmp_path):
    run(tmp_path, stop_after=2)
    cfg = toy_config(tmp_path)
    cfg.data.batch_size = 2
    trainer = Trainer(ToyVideoText(), toy_loader(seed=5, batch=2), cfg, progress=False)
    with pytest.raises(ValueError, match="batch_size=4"):
        trainer.resume()
