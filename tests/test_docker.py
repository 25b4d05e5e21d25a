"""docker/: compose.yaml validates with docker-compose (installed by scripts/setup.sh; no engine needed)."""
import fnmatch
import os
import re
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
    assert {"index", "media"} <= set(config["volumes"])
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
        assert "COPY . /src" in (DOCKER / name).read_text()  # the whole context: every package pyproject names
    assert "faiss-gpu" in (DOCKER / "Dockerfile.gpu").read_text()
    assert "mamba-ssm" in (DOCKER / "Dockerfile.gpu").read_text()


def test_milvus_profile_runs_milvus_and_two_replicas_on_it():
    result = compose_config({"VMR_API_KEY": "k"}, "--profile", "milvus")
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert {"milvus", "milvus-etcd", "milvus-minio", "retrieval-milvus-a", "retrieval-milvus-b"} <= set(services)
    for name in ("retrieval-milvus-a", "retrieval-milvus-b"):
        env = services[name]["environment"]
        assert env["VMR_INDEX_BACKEND"] == "milvus" and env["VMR_MILVUS_URI"] == "http://milvus:19530"
        assert {v["target"] if isinstance(v, dict) else v.split(":")[1] for v in services[name]["volumes"]} == \
            {"/media", "/data/thumbnails"}
    assert services["milvus"]["depends_on"]["milvus-etcd"]["condition"] == "service_healthy"


def test_ray_profile_has_a_head_and_a_worker():
    result = compose_config({"VMR_API_KEY": "k"}, "--profile", "ray")
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert "--head" in services["ray-head"]["command"] and "--address=ray-head:6379" in services["ray-worker"]["command"]


def test_hostnet_file_is_the_cpu_service_on_the_host_network():
    """compose.hostnet.yaml (used by scripts/docker-smoke.sh with a bridge-less daemon) stays in step with
    compose.yaml: same image, build, volumes, health check and settings; host network, loopback only, no ports."""
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose is missing: run scripts/setup.sh (it installs Debian's docker-compose)"
    env = {**os.environ, "VMR_API_KEY": "k", "VMR_PORT": "8123"}
    out = subprocess.run([exe, "-f", str(DOCKER / "compose.hostnet.yaml"), "config"], capture_output=True, text=True,
                         env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    config = yaml.safe_load(out.stdout)
    assert set(config["services"]) == {"retrieval"} and "networks" not in config
    host = config["services"]["retrieval"]
    cpu = yaml.safe_load(compose_config({"VMR_API_KEY": "k"}).stdout)["services"]["retrieval"]
    assert host["network_mode"] == "host" and host["build"]["network"] == "host" and "ports" not in host
    assert host["environment"] == {**cpu["environment"], "VMR_HOST": "127.0.0.1", "VMR_PORT": "8123"}
    for key in ("image", "volumes", "healthcheck", "restart", "stop_grace_period"):
        assert host[key] == cpu[key], key
    assert {k: v for k, v in host["build"].items() if k != "network"} == cpu["build"]


def test_cpu_image_is_built_from_arguments_and_ships_the_kernel():
    text = (DOCKER / "Dockerfile.cpu").read_text()
    for arg in ("BASE_IMAGE", "TORCH_SPEC", "TORCH_INDEX_URL", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL",
                "PIP_FIND_LINKS", "PIP_CERT_URL"):
        assert f"ARG {arg}" in text, arg
    assert "ARG TORCH_SPEC=torch==2.13.0+cpu" in text  # a local version pip can only meet with a CPU build
    assert "COPY . /src" in text and "--target /opt/project /src" in text and "-r /tmp/requirements.txt" in text
    assert "load_extension()" in text and "TORCH_EXTENSIONS_DIR=" in text
    # the runtime stage (after the last FROM) has no compiler and checks that the prebuilt kernel runs there
    runtime = text.rsplit("\nFROM ", 1)[1]
    assert "g++" not in runtime and "'cpp'" in runtime and "COPY --from=project" in runtime


def test_build_context_leaves_out_local_state():
    ignored = {line.strip() for line in (DOCKER.parent / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", "data", "runs", "tests", "**/__pycache__"} <= ignored
    assert not any(line.startswith("!") for line in ignored)  # exclusions only: new packages are sent
    packages = re.search(r'include = \[(.*?)\]', (DOCKER.parent / "pyproject.toml").read_text()).group(1)
    names = re.findall(r'"(\w+)\*"', packages)
    assert "media" in names and "service" in names
    for package in names:  # every installed package reaches the image
        assert not any(fnmatch.fnmatch(package, pattern.rstrip("/")) for pattern in ignored), package
    assert not list(DOCKER.glob("*.dockerignore"))  # BuildKit would prefer these to the root file
