"""Shared helpers for the service tests: a tiny random model, tiny MP4s, and `python -m service` on loopback."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "test-key"
WRITE = {"X-API-Key": API_KEY}


def save_tiny_model(directory: Path, seed: int = 0) -> Path:
    """A random VideoTextModel small enough to embed a clip in milliseconds (32×32 frames, 4 frames, 32-d)."""
    import torch

    from encoders.video_text import VideoTextConfig, build_video_text_model, save_pretrained

    torch.manual_seed(seed)
    model, _ = build_video_text_model(VideoTextConfig(text_layers=1, fusion_layers=1, embed_dim=32, mlm=False))
    save_pretrained(model, str(directory), only_changed=True)
    return directory


def write_clip(path: Path, seconds: float, seed: int, fps: float = 8.0, size: int = 32) -> Path:
    """An MP4 of moving colour noise, different for each seed."""
    from media import write_video

    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (1, size, size, 3))
    frames = (base + rng.integers(-40, 40, (int(seconds * fps), size, size, 3))).clip(0, 255).astype(np.uint8)
    write_video(path, frames, fps=fps)
    return path


def wait_ready(service: "Service", timeout: float = 300) -> None:
    """Until the embedded default library is built and indexed."""
    deadline = time.monotonic() + timeout
    with service.client() as c:
        while (status := c.get("/healthz").json()["default_library"]) != "ready":
            assert not status.startswith("failed") and time.monotonic() < deadline, status
            time.sleep(0.5)


def corrupt_first_frame(src: Path, dst: Path) -> Path:
    """A copy of an MP4 whose headers are intact but whose first frame's data is garbage: decord opens it, then
    fails decoding frame 0."""
    data = bytearray(src.read_bytes())
    payload = data.find(b"mdat") + 4
    data[payload:payload + 4] = b"\x7f" * 4
    dst.write_bytes(bytes(data))
    return dst


def corrupt_middle(src: Path, dst: Path) -> Path:
    """A copy of an MP4 whose headers and first half are intact and whose middle is zeros: decoding fails part-way,
    after the windows (and thumbnails) of the first half."""
    data = bytearray(src.read_bytes())
    start = data.find(b"mdat") + (len(data) - data.find(b"mdat")) // 2
    data[start:start + 3000] = bytes(3000)
    dst.write_bytes(bytes(data))
    return dst


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """`python -m service` as a subprocess on a free loopback port."""

    def __init__(self, data_dir: Path, model_dir: Path, *extra: str, api_key: str | None = API_KEY):
        self.data_dir, self.model_dir, self.extra, self.api_key = data_dir, model_dir, extra, api_key
        self.proc: subprocess.Popen | None = None
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir.parent / f"{data_dir.name}-service.log"

    def start(self, timeout: float = 90.0) -> "Service":
        args = [sys.executable, "-m", "service", "--port", str(self.port), "--data-dir", str(self.data_dir),
                "--model-path", str(self.model_dir), *(["--api-key", self.api_key] if self.api_key else []),
                "--segment-window", "2", "--segment-stride", "1", "--checkpoint-interval-s", "0.5", *self.extra]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "VIDEOMAMBA_SCAN_BACKEND": "torch", "OMP_NUM_THREADS": "1"}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"service exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/livez", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.kill()
        raise RuntimeError(f"service did not answer in {timeout} s:\n{self.log.read_text()[-3000:]}")

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def upload(client: httpx.Client, path: Path, **form) -> httpx.Response:
    with open(path, "rb") as f:
        return client.post("/videos", files={"file": (path.name, f, "video/mp4")}, data=form, headers=WRITE)


def wait_jobs(client: httpx.Client, job_ids: list[str], timeout: float = 120.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = [client.get(f"/jobs/{j}").json() for j in job_ids]
        if all(j["status"] in ("done", "failed") for j in jobs):
            return jobs
        time.sleep(0.2)
    raise TimeoutError(f"jobs not finished after {timeout} s: {jobs}")
