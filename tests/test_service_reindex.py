"""The model that made a library's vectors is recorded with it: a service configured with another model refuses to
start and says how to re-embed, and `python -m service reindex` re-embeds every video from its file and every
caption, keeping ids, fields and files; a video whose file is gone is reported, not silently dropped."""
import subprocess
import sys

import numpy as np
import pytest

from test_service_helpers import API_KEY, ROOT, WRITE, Service, save_tiny_model, upload, wait_jobs, write_clip


def reindex(data, model, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "service", "reindex", "--data-dir", str(data), "--model-path",
                           str(model), "--segment-window", "2", "--segment-stride", "1", *extra], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


def stored_vectors(c) -> dict[int, np.ndarray]:
    """Each video's best window vector as stored (one window per 2 s clip)."""
    results = c.post("/search", json={"query": "a clip", "k": 50, "return_vectors": True}).json()["results"]
    return {r["video_id"]: np.array(r["moments"][0]["vector"]) for r in results}


def embedded(c, path) -> np.ndarray:
    with open(path, "rb") as f:
        return np.array(c.post("/embed", files={"file": (path.name, f, "video/mp4")}).json()["vector"])


@pytest.mark.slow  # about a minute: four service starts and two reindex runs
def test_another_model_refuses_to_start_until_the_library_is_reindexed(tmp_path):
    model_a, model_b = save_tiny_model(tmp_path / "a"), save_tiny_model(tmp_path / "b", seed=1)
    data = tmp_path / "data"
    clips = [write_clip(tmp_path / f"c{i}.mp4", seconds=2.0, seed=i) for i in range(3)]
    (data / "media").mkdir(parents=True)
    on_disk = write_clip(data / "media" / "kept.mp4", seconds=2.0, seed=7)
    gone = write_clip(data / "media" / "gone.mp4", seconds=2.0, seed=8)
    service = Service(data, model_a).start()
    with service.client() as c:
        jobs = [upload(c, p, fields=f'{{"n": {i}}}').json()["id"] for i, p in enumerate(clips)]
        jobs += [c.post("/videos", data={"path": p.name}, headers=WRITE).json()["id"] for p in (on_disk, gone)]
        ids = [j["video_id"] for j in wait_jobs(c, jobs)]
        text_ids = c.post("/texts", json={"texts": ["a clip", "noise"]}, headers=WRITE).json()["ids"]
        fingerprint_a = c.get("/healthz").json()["model_fingerprint"]
    service.stop()
    gone.unlink()

    with pytest.raises(RuntimeError, match="exited with 2"):
        Service(data, model_b).start()
    refusal = (tmp_path / "data-service.log").read_text()
    assert fingerprint_a in refusal and f"python -m service reindex --data-dir {data} --model-path {model_b}" in refusal

    partial = reindex(data, model_b)
    assert partial.returncode == 1 and f"video {ids[4]} (gone.mp4): its file is gone" in partial.stderr
    assert "--drop-missing" in partial.stderr
    with pytest.raises(RuntimeError, match="exited with 2"):
        Service(data, model_b).start()  # still refused: the library is half re-embedded
    assert "did not finish" in (tmp_path / "data-service.log").read_text()

    done = reindex(data, model_b, "--drop-missing")
    assert done.returncode == 0, done.stderr
    assert "re-embedded 4 videos and 2 captions" in done.stdout

    service = Service(data, model_b, "--protect-reads", "true").start()
    try:
        with service.client() as c:
            assert c.get("/livez").json() == {"status": "ok"}
            assert c.get("/healthz").status_code == 401 and c.get("/metrics").status_code == 401
            c.headers.update({"X-API-Key": API_KEY})
            health = c.get("/healthz").json()
            assert health["videos"] == 4 and health["texts"] == 2 and health["model_fingerprint"] != fingerprint_a
            vectors = stored_vectors(c)
            assert sorted(vectors) == sorted(ids[:4])
            for video_id, path in zip(ids, clips + [on_disk]):
                assert np.allclose(vectors[video_id], embedded(c, path), atol=1e-5)  # the new model's vectors
            assert [c.get(f"/videos/{v}").json()["fields"]["n"] for v in ids[:3]] == [0, 1, 2]
            assert c.get(f"/videos/{ids[4]}").status_code == 404
            found = c.post("/search/video", data={"video_id": str(ids[0]), "k": 5}).json()["texts"]
            assert sorted(t["id"] for t in found) == sorted(text_ids)
            assert on_disk.exists()
    finally:
        service.stop()
    with pytest.raises(RuntimeError, match="exited with 2"):
        Service(data, model_a).start()  # the first model is now the other one
