"""The service end to end through a real uvicorn on loopback: ingest, search with segments, delete, restart."""
import shutil

import pytest

from test_service_helpers import WRITE, Service, save_tiny_model, upload, wait_jobs, write_clip


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("live")
    model = save_tiny_model(root / "model")
    clips = [write_clip(root / f"clip{i}.mp4", seconds=2.0, seed=i) for i in range(3)]
    long_clip = write_clip(root / "long.mp4", seconds=6.0, seed=10)
    service = Service(root / "data", model).start()
    yield service, clips, long_clip
    service.kill()


@pytest.mark.slow  # about 35 s: two service starts
def test_ingest_search_delete_restart(env):
    service, clips, long_clip = env
    media = service.data_dir / "media" / "library"
    media.mkdir(parents=True)
    shutil.copy(long_clip, media / "long.mp4")
    with service.client() as c:
        jobs = [upload(c, p, fields='{"kind": "short"}').json()["id"] for p in clips]
        path_job = c.post("/videos", data={"path": "library/long.mp4", "fields": '{"kind": "long"}'}, headers=WRITE)
        assert path_job.status_code == 202, path_job.text
        done = wait_jobs(c, jobs + [path_job.json()["id"]])
        assert [j["status"] for j in done] == ["done"] * 4 and all(j["progress"] == 1.0 for j in done)
        ids = [j["video_id"] for j in done]

        long_video = c.get(f"/videos/{ids[3]}").json()
        assert long_video["duration"] == pytest.approx(6.0, abs=0.2)
        assert len(long_video["segments"]) == 5  # 2 s windows every 1 s
        assert c.post("/texts", json={"texts": ["a noisy clip", "a long video"]}, headers=WRITE).status_code == 200

        r = c.post("/search", json={"query": "a colourful noisy video", "k": 10})
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert sorted(x["video_id"] for x in results) == sorted(ids)
        assert [x["score"] for x in results] == sorted((x["score"] for x in results), reverse=True)
        for x in results:  # each moment lies inside the video, the best one first
            assert x["moments"] and x["moments"][0]["score"] == pytest.approx(x["score"])
            assert all(0 <= m["start"] < m["end"] <= x["duration"] + 1e-6 for m in x["moments"])

        only_long = c.post("/search", json={"query": "anything", "k": 10, "filters": {"kind": "long"}}).json()
        assert [x["video_id"] for x in only_long["results"]] == [ids[3]]

        reranked = c.post("/search", json={"query": "a noisy clip", "k": 3, "rerank": True}).json()["results"]
        assert all(x["rerank_score"] is not None for x in reranked)
        assert [x["rerank_score"] for x in reranked] == sorted((x["rerank_score"] for x in reranked), reverse=True)

        by_video = c.post("/search/video", data={"video_id": ids[0], "k": 5}).json()
        assert ids[0] not in [v["video_id"] for v in by_video["videos"]] and len(by_video["texts"]) == 2
        emb = c.post("/embed", json={"text": "a clip"}).json()
        assert emb["dim"] == 32 and abs(sum(v * v for v in emb["vector"]) - 1) < 1e-4
        with open(clips[0], "rb") as f:
            vemb = c.post("/embed", files={"file": ("a.mp4", f, "video/mp4")}).json()
        assert vemb["kind"] == "video" and len(vemb["segments"]) == 1

        assert c.delete(f"/videos/{ids[1]}", headers=WRITE).json() == {"deleted": ids[1]}
        assert c.get(f"/videos/{ids[1]}").status_code == 404
        before = c.post("/search", json={"query": "a colourful noisy video", "k": 10}).json()["results"]
        assert ids[1] not in [x["video_id"] for x in before] and len(before) == 3
        assert "vmr_http_requests_total" in c.get("/metrics").text
        assert {"/search", "/search/video", "/videos", "/embed"} <= set(c.get("/openapi.json").json()["paths"])

        replaced = wait_jobs(c, [upload(c, clips[1], video_id=str(ids[0])).json()["id"]])[0]  # its video is gone
        assert replaced["video_id"] == ids[0] and c.get(f"/videos/{ids[0]}").json()["fields"]["filename"] == "clip1.mp4"
        before = c.post("/search", json={"query": "a colourful noisy video", "k": 10}).json()["results"]
        assert len(before) == 3

    service.stop()
    service.start()
    with service.client() as c:
        health = c.get("/healthz").json()
        assert health["videos"] == 3 and health["texts"] == 2 and health["index"]["segments"] == "loaded"
        after = c.post("/search", json={"query": "a colourful noisy video", "k": 10}).json()["results"]
        assert [(x["video_id"], x["moments"]) for x in after] == [(x["video_id"], x["moments"]) for x in before]
        assert [x["score"] for x in after] == pytest.approx([x["score"] for x in before], abs=1e-5)
