"""docker/: compose.yaml validates with docker-compose (installed by scripts/setup.sh; no engine needed)."""
import os
import shutil
import subprocess
from pathlib import Path

import yaml

DOCKER = Path(__file__).resolve().parents[1] / "docker"


def compose_config(env: dict, *args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose is missing: run scripts/setup.sh (it installs Debian's docker-compose)"
    return subprocess.run([exe, "-f", str(DOCKER / "compose.yaml"), *args, "config"], capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=60)


def test_compose_file_validates():
    result = compose_config({"VMR_API_KEY": "k"})
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    cpu = config["services"]["retrieval"]
    assert set(config["volumes"]) == {"index", "media"}
    assert {v.split(":")[1] if isinstance(v, str) else v["target"] for v in cpu["volumes"]} == {"/data", "/media"}
    assert "/livez" in " ".join(cpu["healthcheck"]["test"])  # answers without the key, even with protect_reads
    assert cpu["build"]["dockerfile"] == "docker/Dockerfile.cpu"


def test_gpu_profile_reserves_a_gpu():
    result = compose_config({"VMR_API_KEY": "k"}, "--profile", "gpu")
    assert result.returncode == 0, result.stderr
    gpu = yaml.safe_load(result.stdout)["services"]["retrieval-gpu"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]


def test_compose_refuses_to_start_without_an_api_key():
    result = compose_config({"VMR_API_KEY": ""})
    assert result.returncode != 0 and "VMR_API_KEY" in result.stderr


def test_images_pin_torch():
    for name in ("Dockerfile.cpu", "Dockerfile.gpu"):
        assert "torch==2.13.0" in (DOCKER / name).read_text()
        assert "COPY media media" in (DOCKER / name).read_text()  # every package the service imports
    assert "faiss-gpu" in (DOCKER / "Dockerfile.gpu").read_text()
    assert "mamba-ssm" in (DOCKER / "Dockerfile.gpu").read_text()
