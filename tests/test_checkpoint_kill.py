"""SIGKILL in the middle of writing a checkpoint: the previous checkpoint is still the newest complete
one, it loads, training resumes from it, and the dead writer's temp file is never mistaken for a checkpoint."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from test_training import ToyVideoText, toy_config, toy_loader
from training.checkpointing import Checkpointer
from training.loop import Trainer

TESTS = Path(__file__).resolve().parent

CHILD = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_training import ToyVideoText, toy_config, toy_loader
from training.loop import Trainer
cfg = toy_config(Path({out!r}))
cfg.save_every = 100
trainer = Trainer(ToyVideoText(), toy_loader(), cfg, progress=False)
trainer.fit(stop_after=2)
trainer.checkpointer.pause_before_rename = 120
print("writing second checkpoint", flush=True)
trainer.fit(stop_after=4)
"""


def test_sigkill_during_save_keeps_previous_checkpoint(tmp_path):
    folder = tmp_path / "checkpoints"
    child = subprocess.Popen([sys.executable, "-c", CHILD.format(tests=str(TESTS), out=str(tmp_path))],
                             stdout=subprocess.PIPE, text=True, cwd=TESTS.parent)
    try:
        assert child.stdout.readline().strip() == "writing second checkpoint"
        deadline = time.monotonic() + 60
        while not list(folder.glob(".checkpoint_00000004.pt.tmp-*")):
            assert time.monotonic() < deadline, "the child never started writing its second checkpoint"
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
    ck = Checkpointer(folder)
    assert [p.name for p in ck.list()] == ["checkpoint_00000002.pt"]
    assert Checkpointer.load(ck.latest())["step"] == 2
    assert list(folder.glob(".checkpoint_00000004.pt.tmp-*"))  # the killed writer's leftover

    cfg = toy_config(tmp_path)
    cfg.save_every = 100
    trainer = Trainer(ToyVideoText(), toy_loader(), cfg, progress=False)
    assert trainer.resume() and trainer.state.step == 2
    state = trainer.fit(stop_after=4)
    assert state.step == 4 and all(torch.isfinite(torch.tensor(h["loss"])) for h in state.history)
    assert [p.name for p in ck.list()] == ["checkpoint_00000002.pt", "checkpoint_00000004.pt"]
    assert not list(folder.glob(".checkpoint_*.tmp-*"))  # cleaned by the next save
