"""docs/tutorial.md cannot rot: its `bash tested` blocks run in order, as one bash script, in an empty folder, with
smaller sizes and a free port, and each step leaves what the tutorial says it does."""
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from test_service_helpers import free_port

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "docs" / "tutorial.md"


def blocks_to_run(text: str) -> list[str]:
    return re.findall(r"^```bash tested\n(.*?)^```", text, flags=re.S | re.M)


def scaled_down(script: str, port: int) -> str:
    """The tutorial's sizes made smaller; every replaced text must be there, so the two cannot drift apart."""
    replacements = {"--webvid 256": "--webvid 16", "--didemo-test 20": "--didemo-test 4", "batch_size: 16":
                    "batch_size: 4", "max_steps: 300": "max_steps: 2", "127.0.0.1:8000": f"127.0.0.1:{port}",
                    "--port 8000": f"--port {port}"}
    for old, new in replacements.items():
        assert old in script, f"the tutorial no longer says {old!r}: update tests/test_tutorial.py"
        script = script.replace(old, new)
    return script


def test_the_tutorial_marks_its_steps():
    blocks = blocks_to_run(TUTORIAL.read_text())
    assert len(blocks) == 8
    assert any("python -m service --library" in b for b in blocks) and any("training.pretrain" in b for b in blocks)


@pytest.mark.slow  # the whole tutorial at a small scale: about 3 minutes on 2 cores
def test_the_tutorial_runs(tmp_path):
    script = "set -euo pipefail\n" + scaled_down("\n".join(blocks_to_run(TUTORIAL.read_text())), free_port())
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT),
           "VIDEOMAMBA_CACHE": str(tmp_path / "cache"), "VIDEOMAMBA_SCAN_BACKEND": "torch", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(["bash", "-c", script], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=900)
    finally:  # the background service too, whatever happened
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    service_log = tmp_path / "service.log"
    assert proc.returncode == 0, out[-4000:] + (service_log.read_text()[-3000:] if service_log.exists() else "")

    assert len(list((tmp_path / "my_videos").glob("*.mp4"))) == 12
    results = json.loads((tmp_path / "results.json").read_text())["results"]
    assert len(results) == 3 and all(isinstance(r["video_id"], int) for r in results)
    assert re.search(r"'library_path': 'video\d+\.mp4'", out)
    assert '"indexed":12' in out
    model = tmp_path / "runs" / "tiny" / "model"
    assert (model / "model.safetensors").is_file() and "step 2" in (tmp_path / "runs" / "tiny" / "train.log").read_text()
    tiny = json.loads((tmp_path / "runs" / "tiny" / "didemo.json").read_text())
    demo = json.loads((tmp_path / "runs" / "demo-didemo.json").read_text())
    for result in (tiny, demo):
        assert result["meta"]["bench"] == "didemo" and result["counts"]["videos_evaluated"] == 4
        assert 0 <= result["emb"]["t2v_r1"] <= 100
