"""The embedded default: an empty data dir is filled with the synthetic library and serves real results."""
import time

import pytest

from test_service_helpers import Service, save_tiny_model


@pytest.mark.slow  # about 40 s: synthesizes and indexes 31 videos
def test_embedded_default_library(tmp_path):
    model = save_tiny_model(tmp_path / "model")
    service = Service(tmp_path / "data", model, "--embedded-default", "true", "--segment-window", "8",
                      "--segment-stride", "4").start()
    try:
        with service.client() as c:
            deadline = time.monotonic() + 180
            while (status := c.get("/healthz").json()["default_library"]) != "ready" and time.monotonic() < deadline:
                assert not status.startswith("failed"), status
                time.sleep(0.5)
            health = c.get("/healthz").json()
            assert status == "ready" and health["videos"] == 31 and health["texts"] == 24
            # built in the service's own data dir: the media root (the user's) is only read
            assert (service.data_dir / "demo" / "manifest.json").exists()
            assert not any((service.data_dir / "media").iterdir())
            results = c.post("/search", json={"query": "a red circle moves left", "k": 5}).json()["results"]
            assert len(results) == 5 and all(r["fields"]["corpus"] in ("msrvtt", "didemo", "events") for r in results)
            long_ones = c.post("/search", json={"query": "a star", "k": 3, "filters": {"corpus": "didemo"}}).json()
            assert long_ones["results"] and all(r["duration"] > 8 for r in long_ones["results"])
            for r in long_ones["results"]:  # moments are refined windows: inside the video, at most one window long
                assert r["moments"] and all(0 <= m["start"] < m["end"] <= r["duration"] + 1e-6 and
                                            m["end"] - m["start"] <= 8 + 1e-6 for m in r["moments"])
            # the events videos (two with their order-swapped twins), each event 7-9 s with its idle time
            events = c.post("/search", json={"query": "a shape", "k": 10, "filters": {"corpus": "events"}}).json()
            assert len(events["results"]) == 4 and all(r["duration"] >= 14 for r in events["results"])
    finally:
        service.stop()
