"""Bad input gets a clear 4xx naming the problem, and the service keeps serving afterwards."""
import concurrent.futures

import httpx
import pytest

from test_service_helpers import API_KEY, WRITE, Service, save_tiny_model, upload, wait_jobs, write_clip


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("errors")
    model = save_tiny_model(root / "model")
    good = write_clip(root / "good.mp4", seconds=2.0, seed=1)
    # small upload limit (80 KB) and queue (2 texts) so both limits are easy to hit
    service = Service(root / "data", model, "--max-upload-mb", "0.08", "--queue-size", "2",
                      "--batch-wait-ms", "50", "--max-k", "20", "--max-video-seconds", "5").start()
    with service.client() as c:
        wait_jobs(c, [upload(c, good).json()["id"]])
    yield service, root, good
    service.kill()


def still_serving(c: httpx.Client) -> None:
    assert c.get("/healthz").json()["status"] == "ok"
    assert c.post("/search", json={"query": "a clip", "k": 1}).status_code == 200


def check(r: httpx.Response, status: int, words: str) -> None:
    assert r.status_code == status, r.text
    assert words in r.json()["detail"], r.json()["detail"]


def test_bad_uploads(env):
    service, root, good = env
    truncated = root / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    empty = root / "empty.mp4"
    empty.write_bytes(b"")
    text = root / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    big = root / "big.mp4"
    big.write_bytes(b"\0" * 200_000)
    too_long = write_clip(root / "long.mp4", seconds=7.0, seed=3)
    with service.client() as c:
        check(upload(c, truncated), 400, "not a decodable video")
        check(upload(c, empty), 400, "empty")
        check(upload(c, text), 400, "not a decodable video")
        check(upload(c, big), 413, "limit")
        check(upload(c, too_long), 413, "the limit is 5 s")
        check(c.post("/videos", headers=WRITE), 422, "exactly one of")
        check(c.post("/search/video", files={"file": ("x.mp4", b"garbage", "video/mp4")}), 400, "decodable")
        check(c.post("/embed", content=b"text", headers={"content-type": "text/plain"}), 415, "application/json")
        still_serving(c)
        assert not list((service.data_dir / "media" / "uploads").glob("*.bin"))  # refused files are not kept


def test_unknown_ids_keys_json_and_bounds(env):
    service, _, _ = env
    with service.client() as c:
        check(c.get("/videos/987654"), 404, "no video with id 987654")
        check(c.delete("/videos/987654", headers=WRITE), 404, "no video")
        check(c.get("/jobs/nope"), 404, "no job")
        check(c.post("/search/video", data={"video_id": 987654}), 404, "no video")
        check(c.post("/texts", json={"texts": ["x"]}), 401, "API key")
        check(c.post("/texts", json={"texts": ["x"]}, headers={"X-API-Key": "wrong"}), 403, "wrong API key")
        check(c.delete("/videos/1", headers={"Authorization": "Bearer wrong"}), 403, "wrong API key")
        bearer = {"Authorization": f"Bearer {API_KEY}"}
        assert c.post("/texts", json={"texts": ["x"]}, headers=bearer).status_code == 200
        check(c.post("/search", content=b'{"query": "a', headers={"content-type": "application/json"}), 422,
              "JSON")
        check(c.post("/search", json={"query": "a", "k": 0}), 422, "k")
        check(c.post("/search", json={"query": "a", "k": 21}), 422, "k must be between 1 and 20")
        check(c.post("/search", json={"query": "x" * 600}), 422, "the limit is 512")
        check(c.post("/search", json={"query": "a", "colour": "red"}), 422, "colour")
        still_serving(c)


def test_paths_outside_media_root_are_refused(env):
    service, _, _ = env
    outside = service.data_dir.parent / "secret.mp4"
    outside.write_bytes(b"x")
    (service.data_dir / "media" / "link.mp4").symlink_to(outside)
    with service.client() as c:
        for path in ("../secret.mp4", "../../etc/passwd", "/etc/passwd", str(outside), "link.mp4"):
            check(c.post("/videos", data={"path": path}, headers=WRITE), 403, "outside the media root")
        check(c.post("/videos", data={"path": "missing.mp4"}, headers=WRITE), 404, "no file")
        still_serving(c)


def test_overload_answers_503_not_a_crash(env):
    service, _, _ = env
    with service.client() as c, concurrent.futures.ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(lambda i: c.post("/search", json={"query": f"query {i}", "k": 1}), range(64)))
        codes = {r.status_code for r in answers}
        assert codes == {200, 503}, codes
        refused = next(r for r in answers if r.status_code == 503)
        assert "queue is full" in refused.json()["detail"] and refused.headers["Retry-After"] == "1"
        assert 'vmr_overloaded_total' in c.get("/metrics").text
        still_serving(c)
