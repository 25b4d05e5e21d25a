"""SIGKILL during ingestion: after a restart the index loads, every acknowledged video is searchable and every job
still has a record."""
import time

import pytest

from test_service_helpers import Service, save_tiny_model, upload, write_clip


@pytest.mark.slow  # about 50 s: two service starts and several 16 s videos
def test_sigkill_while_ingesting(tmp_path):
    model = save_tiny_model(tmp_path / "model")
    clips = [write_clip(tmp_path / f"c{i}.mp4", seconds=16.0, seed=i) for i in range(12)]  # 15 segments each
    service = Service(tmp_path / "data", model, "--checkpoint-interval-s", "0.2").start()
    acknowledged = {}
    try:
        with service.client() as c:
            jobs = [upload(c, p).json()["id"] for p in clips]
            deadline = time.monotonic() + 120
            while len(acknowledged) < 3 and time.monotonic() < deadline:
                for job_id in jobs:
                    job = c.get(f"/jobs/{job_id}").json()
                    if job["status"] == "done":
                        acknowledged[job_id] = job["video_id"]
                time.sleep(0.05)
        assert 3 <= len(acknowledged) < len(clips), "the kill must land in the middle of the ingestion"
    finally:
        service.kill()  # SIGKILL: no shutdown hook, no final checkpoint

    service.start()
    try:
        with service.client() as c:
            health = c.get("/healthz").json()
            assert health["index"]["segments"] in ("loaded", "caught-up", "rebuilt")
            assert health["videos"] >= len(acknowledged)
            found = {r["video_id"] for r in c.post("/search", json={"query": "noise", "k": 100}).json()["results"]}
            assert set(acknowledged.values()) <= found
            for video_id in acknowledged.values():
                assert len(c.get(f"/videos/{video_id}").json()["segments"]) == 15
            records = {job_id: c.get(f"/jobs/{job_id}").json() for job_id in jobs}
            for job_id, video_id in acknowledged.items():
                assert records[job_id]["status"] == "done" and records[job_id]["video_id"] == video_id
            unfinished = [r for r in records.values() if r["status"] != "done"]
            assert unfinished and all(r["status"] == "failed" and "interrupted" in r["error"] for r in unfinished)
            # the uploads of the jobs cut short belonged to no video: removed at start, and counted
            assert health["cleaned_at_start"]["uploads"] == len(unfinished)
            assert len(list((service.data_dir / "uploads").iterdir())) == health["videos"]
            thumbnails = service.data_dir / "thumbnails"
            assert sorted(p.name for p in thumbnails.iterdir() if p.name != ".pending") == \
                sorted(str(v) for v in range(1, health["videos"] + 1))
            assert not list((thumbnails / ".pending").glob("*"))
    finally:
        service.kill()
