"""GET /healthz says which selective-scan backend the video encoder runs on (decided once per process)."""
import pytest
import torch
from fastapi.testclient import TestClient

from encoders.ops.selective_scan import ENV_VAR, last_backend, selective_scan_fn
from encoders.ops.selective_scan_cpu import build_error
from service.app import create_app
from service.config import ServiceConfig
from encoders.video_text import load_embedder
from encoders.video_text.embedder import scan_backend
from test_service_helpers import save_tiny_model


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("health")
    embedder = load_embedder(str(save_tiny_model(root / "model")))
    app = create_app(ServiceConfig(data_dir=root / "data"), embedder)
    return TestClient(app)


def tiny_scan() -> str:
    """A float32 CPU scan shaped like the encoder's; returns the backend that ran it."""
    u = torch.randn(1, 4, 8)
    selective_scan_fn(u, torch.rand(1, 4, 8), -torch.rand(4, 2), torch.randn(1, 2, 8), torch.randn(1, 2, 8),
                      torch.ones(4), z=torch.randn(1, 4, 8), delta_bias=torch.zeros(4), delta_softplus=True)
    return last_backend()


def test_healthz_reports_the_backend_the_encoder_runs(client, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    health = client.get("/healthz").json()
    assert health["status"] == "ok"
    assert health["scan_backend"] == ("cpp" if build_error() is None else "torch")
    assert health["scan_backend"] == tiny_scan()


@pytest.mark.parametrize("forced", ["torch", "ref"])
def test_healthz_follows_a_forced_backend(client, monkeypatch, forced):
    monkeypatch.setenv(ENV_VAR, forced)
    assert client.get("/healthz").json()["scan_backend"] == forced == tiny_scan()


def test_a_backend_that_cannot_run_here_is_reported(client, monkeypatch):
    monkeypatch.setenv(ENV_VAR, "cuda")
    answer = client.get("/healthz").json()["scan_backend"]
    assert answer.startswith("error: ") and "CUDA" in answer


def test_cuda_encoders_without_mamba_ssm_use_the_torch_scan(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as _  # noqa: F401
        expected = "cuda"
    except Exception:  # no mamba-ssm kernels (every CPU machine)
        expected = "torch"
    assert scan_backend("cuda:0") == expected
    assert scan_backend("cpu") == ("cpp" if build_error() is None else "torch")
