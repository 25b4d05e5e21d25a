"""Two `python -m service` replicas on one Milvus (a real milvus-lite server) serve one library: what is ingested
through one is found, listed and deleted through the other, and a delete through either is gone in both. Each
replica has its own data dir (its job records); the media volume is shared."""
import pytest

from milvus_servers import MilvusLite
from test_service_helpers import WRITE, Service, save_tiny_model, upload, wait_jobs, write_clip


@pytest.fixture(scope="module")
def replicas(tmp_path_factory):
    root = tmp_path_factory.mktemp("replicas")
    server = MilvusLite(root / "milvus").start()
    model = save_tiny_model(root / "model")
    shared = ["--index-backend", "milvus", "--milvus-uri", server.uri, "--milvus-collection", "shared",
              "--media-root", str(root / "media")]
    a = b = None
    try:
        a = Service(root / "a", model, *shared).start()
        b = Service(root / "b", model, *shared).start()
        yield a, b, [write_clip(root / f"clip{i}.mp4", seconds=3.0, seed=i) for i in range(2)]
    finally:
        for service in (a, b):
            if service is not None:
                service.kill()
        server.kill()


@pytest.mark.slow  # about a minute: two service starts and a Milvus server
def test_ingest_through_one_replica_find_and_delete_through_the_other(replicas):
    a, b, clips = replicas
    with a.client() as ca, b.client() as cb:
        jobs = [upload(ca, clip, fields='{"kind": "replicated"}').json()["id"] for clip in clips]
        done = wait_jobs(ca, jobs)
        assert [j["status"] for j in done] == ["done", "done"], done
        ids = [j["video_id"] for j in done]

        seen = cb.get(f"/videos/{ids[0]}")
        assert seen.status_code == 200, seen.text
        assert seen.json()["fields"]["kind"] == "replicated" and len(seen.json()["segments"]) == 2
        assert sorted(v["id"] for v in cb.get("/videos").json()["videos"]) == sorted(ids)
        found = cb.post("/search", json={"query": "colour noise", "k": 5, "filters": {"kind": "replicated"}})
        assert found.status_code == 200, found.text
        assert sorted(r["video_id"] for r in found.json()["results"]) == sorted(ids)
        keyword = cb.post("/search", json={"query": "clip1", "k": 5, "mode": "keyword"}).json()["results"]
        assert [r["video_id"] for r in keyword] == [ids[1]]
        assert ca.get("/healthz").json()["videos"] == cb.get("/healthz").json()["videos"] == 2
        assert cb.get("/healthz").json()["index"]["backend"] == "milvus"

        assert cb.delete(f"/videos/{ids[0]}", headers=WRITE).json() == {"deleted": ids[0]}
        assert ca.get(f"/videos/{ids[0]}").status_code == 404
        after = ca.post("/search", json={"query": "colour noise", "k": 5}).json()["results"]
        assert [r["video_id"] for r in after] == [ids[1]]
