"""Real Milvus servers for the tests, started on loopback and stopped by their own process ids: milvus-lite (the
pure-Python server from PyPI) and the Milvus 2.3 standalone binary that the PyPI package `milvus` ships (only inside
a network namespace that has nothing but loopback: it listens on every interface)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
SHARED_BINARIES = Path(os.environ.get("VMR_MILVUS_BIN_CACHE", "/tmp/vmr-milvus-2.3.5"))
ROOT_TOKEN = "root:Milvus"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(ready, what: str, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        if ready():
            return
        time.sleep(0.2)
    raise RuntimeError(f"{what} not ready after {timeout} s:\n{log.read_text()[-3000:]}")


class MilvusLite:
    """`milvus-lite server` on a free loopback port over `data_dir`."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.log = data_dir.parent / f"{data_dir.name}-milvus-lite.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> "MilvusLite":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "milvus_lite", "server", "--host", "127.0.0.1",
                                          "--port", str(self.port), "--data-dir", str(self.data_dir)],
                                         stdout=log, stderr=subprocess.STDOUT)
        wait_for(self._listening, "milvus-lite", self.proc, self.log, timeout)
        return self

    def _listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), 0.5).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 20 s."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(20)

    def restart(self) -> None:
        """A crash and a restart on the same port and data: what was acknowledged must still be there."""
        self.kill()
        self.start()


class MilvusStandalone:
    """The Milvus 2.3.5 standalone binary over `data_dir` (etcd embedded, local storage), authentication on.

    Its binaries (about 250 MB unpacked) are unpacked once into SHARED_BINARIES and linked into each data dir.
    Listens on 19530 (gRPC), 9091 (health) and internal ports on every interface: run it only in a network
    namespace with nothing but loopback (`unshare --net`)."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.uri = "http://127.0.0.1:19530"
        self.log = data_dir / "logs" / "milvus-stdout.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 180.0, attempts: int = 3) -> "MilvusStandalone":
        """Seen here once in a loaded CI-like run: a restart after SIGKILL that printed nothing and never became
        healthy (the restarts before it took about 55 s); a fresh launch then goes on. So: up to `attempts`."""
        for attempt in range(1, attempts + 1):
            try:
                return self._launch(timeout)
            except RuntimeError:
                self.kill()
                if attempt == attempts:
                    raise
        raise AssertionError("unreachable")

    def _launch(self, timeout: float) -> "MilvusStandalone":
        from milvus import MilvusServerConfig, _initialize_data_files

        _initialize_data_files(str(SHARED_BINARIES))  # a no-op once unpacked (it checks checksums)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not (self.data_dir / "bin").exists():
            (self.data_dir / "bin").symlink_to(SHARED_BINARIES / "bin")
        config = MilvusServerConfig(data_dir=str(self.data_dir))
        config.set("authorization_enabled", True)
        config.resolve()  # writes configs/milvus.yaml with the default ports (free in a fresh namespace)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "DEPLOY_MODE": "STANDALONE", "METRICS_PORT": "9091",
               "MILVUS_RUN_DIR": str(self.data_dir / "run"), "LD_LIBRARY_PATH": str(SHARED_BINARIES / "bin")}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([str(SHARED_BINARIES / "bin" / "milvus"), "run", "standalone"],
                                         cwd=self.data_dir, env=env, stdout=log, stderr=subprocess.STDOUT)
        wait_for(self._healthy, "Milvus 2.3 standalone", self.proc, self.log, timeout)
        return self

    @staticmethod
    def _healthy() -> bool:
        """/healthz says OK and the gRPC port accepts connections (after a restart it opens later)."""
        try:
            if httpx.get("http://127.0.0.1:9091/healthz", timeout=2).text.strip() != "OK":
                return False
            socket.create_connection(("127.0.0.1", 19530), 1).close()
            return True
        except (httpx.TransportError, OSError):
            return False

    def kill(self) -> None:
        """SIGKILL (SIGTERM can hang this binary); the data survives it."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    stop = kill

    def restart(self) -> None:
        self.kill()
        self.start()
