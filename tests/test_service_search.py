"""POST /search as a product, against a real server on loopback with real MP4 files: moments grouped by video,
pages, filters, keywords and hybrid, search by example, "A then B", vectors, media with HTTP Range, thumbnails,
GET /videos, the one error shape and the limits in the OpenAPI schema."""
import io
import json

import numpy as np
import pytest

from test_service_helpers import WRITE, Service, save_tiny_model, upload, wait_jobs, write_clip

MAX_K = 30


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from media import write_image, write_video

    root = tmp_path_factory.mktemp("search")
    model = save_tiny_model(root / "model")
    service = Service(root / "data", model, "--max-k", str(MAX_K)).start()
    clips = [write_clip(root / f"clip{i}.mp4", seconds=2.0, seed=i) for i in range(6)]
    rng = np.random.default_rng(50)
    parts = [rng.integers(0, 256, (1, 32, 32, 3)) + rng.integers(-30, 30, (16, 32, 32, 3)) for _ in range(4)]
    long_path = root / "long_zebra_walk.mp4"
    write_video(long_path, np.concatenate(parts).clip(0, 255).astype(np.uint8), fps=8.0)  # 8 s, four scenes
    still = root / "still.png"
    from media import read_frames_at

    write_image(still, read_frames_at(clips[2], timestamps=[1.0])[0].numpy())
    kinds = ["cat", "dog", "cat", "bird", "dog", "cat"]
    with service.client() as c:
        jobs = [upload(c, p, fields=json.dumps({"kind": kinds[i], "rank": i, "title": f"clip {i}",
                                                "caption": "a zebra runs" if i == 4 else "noise"})).json()["id"]
                for i, p in enumerate(clips)]
        jobs.append(upload(c, long_path, fields=json.dumps({"kind": "long"})).json()["id"])
        done = wait_jobs(c, jobs)
    assert all(j["status"] == "done" for j in done), done
    ids = [j["video_id"] for j in done]
    yield service, ids, clips, long_path, still
    service.kill()


def search(c, **body):
    r = c.post("/search", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def error(r, status, code, words=""):
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"detail", "code"} and body["code"] == code and words in body["detail"], body


def test_results_are_videos_with_their_moments(env):
    service, ids, *_ = env
    with service.client() as c:
        res = search(c, query="a noisy video", k=10, moments_per_video=2)
        assert sorted(r["video_id"] for r in res["results"]) == sorted(ids)
        scores = [r["score"] for r in res["results"]]
        assert scores == sorted(scores, reverse=True) and res["next_page_token"] is None
        for r in res["results"]:
            assert 1 <= len(r["moments"]) <= 2 and r["moments"][0]["score"] == pytest.approx(r["score"])
            assert [m["score"] for m in r["moments"]] == sorted((m["score"] for m in r["moments"]), reverse=True)
            spans = sorted((m["start"], m["end"]) for m in r["moments"])
            assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))  # non-overlapping
            assert all(0 <= m["start"] < m["end"] <= r["duration"] + 1e-6 for m in r["moments"])
            assert r["thumbnail_url"] == r["moments"][0]["thumbnail_url"]
            assert r["media_url"] == f"/videos/{r['video_id']}/media" and "path" not in r
        flat = search(c, query="a noisy video", k=12, group_by="moment")["results"]
        assert [r["score"] for r in flat] == sorted((r["score"] for r in flat), reverse=True)
        assert all(len(r["moments"]) == 1 for r in flat) and len(flat) > len(ids) - 1


def test_pages_do_not_overlap_and_add_up_to_one_request(env):
    service, ids, *_ = env
    with service.client() as c:
        for body in ({"query": "a noisy video"}, {"query": "zebra", "mode": "hybrid"},
                     {"query": "noisy", "group_by": "moment"}):
            whole = [(r["video_id"], r["moments"][0]["start"]) for r in search(c, k=MAX_K, **body)["results"]]
            paged, token = [], None
            while True:
                page = search(c, k=3, page_token=token, **body) if token else search(c, k=3, **body)
                paged += [(r["video_id"], r["moments"][0]["start"]) for r in page["results"]]
                token = page["next_page_token"]
                if token is None:
                    break
            assert paged == whole and len(set(paged)) == len(paged), body


def test_bad_and_stale_page_tokens_are_400s_that_say_so(env, tmp_path):
    service, ids, clips, *_ = env
    with service.client() as c:
        token = search(c, query="a noisy video", k=2)["next_page_token"]
        error(c.post("/search", json={"query": "a noisy video", "k": 2, "page_token": "garbage!"}), 400,
              "bad_request", "malformed")
        error(c.post("/search", json={"query": "something else", "k": 2, "page_token": token}), 400,
              "stale_page_token", "another request")
        extra = wait_jobs(c, [upload(c, write_clip(tmp_path / "x.mp4", 2.0, seed=99)).json()["id"]])[0]
        error(c.post("/search", json={"query": "a noisy video", "k": 2, "page_token": token}), 400,
              "stale_page_token", "library changed")
        assert c.delete(f"/videos/{extra['video_id']}", headers=WRITE).status_code == 200


def test_filters_equality_any_of_and_ranges(env):
    service, ids, *_ = env
    with service.client() as c:
        cats = search(c, query="noise", k=10, filters={"kind": "cat"})["results"]
        assert sorted(r["video_id"] for r in cats) == sorted(ids[i] for i in (0, 2, 5))
        some = search(c, query="noise", k=10, filters={"kind": ["dog", "bird"], "rank": {"gte": 3}})["results"]
        assert sorted(r["video_id"] for r in some) == sorted(ids[i] for i in (3, 4))
        longer = search(c, query="noise", k=10, filters={"duration": {"gt": 4}})["results"]
        assert [r["video_id"] for r in longer] == [ids[6]]
        assert search(c, query="noise", k=10, filters={"created": {"lt": 1}})["results"] == []
        error(c.post("/search", json={"query": "x", "filters": {"rank": {"near": 3}}}), 422, "invalid_request",
              "unknown operator")


def test_keyword_and_hybrid(env):
    service, ids, *_ = env
    with service.client() as c:
        kw = search(c, query="zebra", mode="keyword", k=10)["results"]
        assert sorted(r["video_id"] for r in kw) == sorted([ids[4], ids[6]])  # a caption and a file name
        hybrid = search(c, query="zebra", mode="hybrid", k=10)["results"]
        assert {r["video_id"] for r in hybrid[:2]} == {ids[4], ids[6]} and len(hybrid) == len(ids)
        assert all(r["moments"] for r in kw)  # where the text's vector matches best


def test_search_by_example_moment_image_and_clip(env):
    service, ids, clips, long_path, still = env
    with service.client() as c:
        by_moment = search(c, example={"video_id": ids[6], "start": 2, "end": 4}, k=10)["results"]
        assert ids[6] not in [r["video_id"] for r in by_moment] and len(by_moment) == len(ids) - 1
        error(c.post("/search", json={"example": {"video_id": 999999}}), 404, "not_found", "no video")
        error(c.post("/search", json={"example": {"video_id": ids[6], "start": 5, "end": 2}}), 422,
              "invalid_request")
        with open(still, "rb") as f:
            r = c.post("/search/file", files={"file": ("frame.png", f, "image/png")}, data={"options": '{"k": 3}'})
        assert r.status_code == 200, r.text
        assert r.json()["results"][0]["video_id"] == ids[2]
        with open(clips[3], "rb") as f:
            r = c.post("/search/file", files={"file": ("q.mp4", f, "video/mp4")},
                       data={"options": json.dumps({"k": 2, "filters": {"kind": "bird"}})})
        assert [x["video_id"] for x in r.json()["results"]] == [ids[3]]
        with open(still, "rb") as f:
            error(c.post("/search/file", files={"file": ("f.png", f, "image/png")}, data={"options": "{bad"}), 422,
                  "invalid_request")
        assert not list((service.data_dir / "tmp").iterdir())  # query uploads are not kept


def test_then_answers_pairs_in_time_order(env):
    """The tiny random model maps every text to about the same vector, so it cannot tell two events apart: what is
    checked here is the answer's form; the ranking is tested in test_library_contract.py and, with the demo model
    on the demo library, in test_service_default.py."""
    service, ids, *_ = env
    with service.client() as c:
        res = search(c, query="a noisy scene", then="a bright flash", max_gap=3, k=10)["results"]
        for r in res:
            a, b = r["moments"]
            assert a["end"] <= b["start"] + 1e-6 and b["start"] - a["end"] <= 3 + 1e-6
            assert r["score"] == pytest.approx((a["score"] + b["score"]) / 2, abs=1e-5)
        for body in ({"query": "a", "then": "b", "mode": "keyword"}, {"query": "a", "then": "b", "group_by": "moment"},
                     {"example": {"video_id": ids[0]}, "then": "b"}, {"query": "a", "then": " "}):
            error(c.post("/search", json=body), 422, "invalid_request")


def test_return_vectors(env):
    service, *_ = env
    with service.client() as c:
        plain = search(c, query="a noisy video", k=2)
        assert plain["query_vector"] is None and plain["results"][0]["moments"][0]["vector"] is None
        res = search(c, query="a noisy video", k=2, return_vectors=True)
        q = np.array(res["query_vector"])
        m = np.array(res["results"][0]["moments"][0]["vector"])
        assert q.shape == (32,) and np.linalg.norm(q) == pytest.approx(1, abs=1e-4)
        assert float(q @ m) == pytest.approx(res["results"][0]["moments"][0]["score"], abs=1e-4)


def cache_counts(c) -> dict[str, float]:
    import re

    return {k: float(v) for k, v in re.findall(r'vmr_query_cache_total\{outcome="(\w+)"\} (\S+)',
                                               c.get("/metrics").text)}


def test_a_repeated_query_is_answered_from_the_vector_cache(env):
    service, *_ = env
    with service.client() as c:
        first = search(c, query="a cached query about zebras", k=3, return_vectors=True)
        before = cache_counts(c)
        again = search(c, query="a cached query about zebras", k=3, return_vectors=True)
        after = cache_counts(c)
    assert after["hit"] == before["hit"] + 1 and after["miss"] == before["miss"]
    assert again["query_vector"] == first["query_vector"]
    assert [r["video_id"] for r in again["results"]] == [r["video_id"] for r in first["results"]]


def test_media_is_served_with_range_and_thumbnails_are_jpegs(env):
    service, ids, clips, *_ = env
    data = clips[1].read_bytes()
    with service.client() as c:
        full = c.get(f"/videos/{ids[1]}/media")
        assert full.status_code == 200 and full.content == data and full.headers["content-type"] == "video/mp4"
        assert full.headers["accept-ranges"] == "bytes"
        part = c.get(f"/videos/{ids[1]}/media", headers={"Range": "bytes=100-199"})
        assert part.status_code == 206 and part.content == data[100:200]
        assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
        result = search(c, query="a noisy video", k=1)["results"][0]
        thumb = c.get(result["thumbnail_url"])
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
        assert thumb.content[:3] == b"\xff\xd8\xff" and len(thumb.content) < 20_000
        import av

        with av.open(io.BytesIO(thumb.content)) as container:
            frame = next(container.decode(video=0))
        assert (frame.width, frame.height) == (32, 32)
        error(c.get("/videos/999999/media"), 404, "not_found")
        error(c.get("/videos/999999/thumbnail"), 404, "not_found")


def test_library_listing_and_delete_removes_thumbnails(env, tmp_path):
    service, ids, *_ = env
    with service.client() as c:
        first = c.get("/videos", params={"k": 4}).json()
        assert first["total"] == len(ids) and len(first["videos"]) == 4 and first["next_page_token"]
        rest = c.get("/videos", params={"k": 4, "page_token": first["next_page_token"]}).json()
        assert [v["id"] for v in first["videos"] + rest["videos"]] == sorted(ids) and rest["next_page_token"] is None
        assert all(v["status"] == "ready" and v["thumbnail_url"] and "path" not in v for v in first["videos"])
        cats = c.get("/videos", params={"filters": json.dumps({"kind": "cat"}), "sort": "-title"}).json()
        assert [v["title"] for v in cats["videos"]] == ["clip 5", "clip 2", "clip 0"]
        error(c.get("/videos", params={"sort": "colour"}), 422, "invalid_request")
        job = wait_jobs(c, [upload(c, write_clip(tmp_path / "gone.mp4", 2.0, seed=7)).json()["id"]])[0]
        vid = job["video_id"]
        assert c.get(f"/videos/{vid}/thumbnail").status_code == 200
        assert c.delete(f"/videos/{vid}", headers=WRITE).status_code == 200
        error(c.get(f"/videos/{vid}/thumbnail"), 404, "not_found")
        assert not (service.data_dir / "thumbnails" / str(vid)).exists()


def test_openapi_documents_limits_examples_and_the_error_shape(env):
    service, *_ = env
    with service.client() as c:
        doc = c.get("/openapi.json").json()
        request = doc["components"]["schemas"]["SearchRequest"]
        assert request["properties"]["k"]["maximum"] == MAX_K
        assert {"string": 512} == {o["type"]: o["maxLength"] for o in request["properties"]["query"]["anyOf"]
                                   if o.get("type") == "string"}
        assert request["examples"] and any("then" in e for e in request["examples"])
        search_op = doc["paths"]["/search"]["post"]
        for status in ("400", "404", "422", "503"):
            assert search_op["responses"][status]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorOut")
        error(c.post("/search", json={"query": "a", "k": MAX_K + 1}), 422, "invalid_request", f"{MAX_K}")
        error(c.post("/search", json={"query": "a", "k": True}), 422, "invalid_request")
        error(c.get("/nowhere"), 404, "not_found")


def test_rerank_reads_stored_window_tokens_not_the_video(env):
    service, ids, *_ = env
    tokens = np.load(service.data_dir / "tokens" / f"{ids[6]}.npy")
    with service.client() as c:
        windows = c.get(f"/videos/{ids[6]}").json()["segments"]
        assert tokens.dtype == np.float16 and tokens.shape[0] == len(windows)
        plain = search(c, query="a noisy video", k=10)["results"]
        media = sorted((service.data_dir / "uploads").iterdir())
        hidden = [p.rename(p.with_name(p.name + ".away")) for p in media]  # no video can be decoded now
        try:
            ranked = search(c, query="a noisy video", k=10, rerank=True)["results"]
        finally:
            for p in hidden:
                p.rename(p.with_name(p.name[:-len(".away")]))
        assert sorted(r["video_id"] for r in ranked) == sorted(r["video_id"] for r in plain)
        assert all(r["rerank_score"] is not None for r in ranked)
        assert [r["rerank_score"] for r in ranked] == sorted((r["rerank_score"] for r in ranked), reverse=True)
        assert all(r["rerank_score"] is None for r in plain)
        error(c.post("/search", json={"query": "a", "then": "b", "rerank": True}), 422, "invalid_request")
