"""The README's search examples, run as written against the demo library of scripts/demo.sh (real server on
loopback, the committed demo model, real MP4s), each checked against what the README says it returns. Every
example in the README needs a check here, and every check an example there: editing one without the other fails."""
import json
import re

import pytest

from test_service_helpers import ROOT, wait_ready

pytestmark = pytest.mark.slow  # shares the demo library with tests/test_page.py (built once per session)

README = (ROOT / "README.md").read_text()
TOKEN_PLACEHOLDER = "<next_page_token of the first answer>"


def readme_search_bodies() -> list[str]:
    """The JSON bodies of the README's `POST /search` examples, in order: the quickstart's curl and every
    `search '...'` line of a bash block."""
    bodies = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        if "/search" in block and "-d '{" in block:
            bodies += re.findall(r"-d '(\{.*?\})'", block)
        bodies += re.findall(r"^search '(\{.*\})'$", block, re.M)
    return bodies


def key(body: str) -> str:
    return json.dumps(json.loads(body.replace(TOKEN_PLACEHOLDER, "TOKEN")), sort_keys=True)


def titles(answer: dict) -> list[str]:
    return [r["title"] for r in answer["results"]]


def check_quickstart(answer, c):
    first = answer["results"][0]
    assert titles(answer)[0] == "video18" and len(answer["results"]) == 3
    assert "large blue circle" in first["fields"]["caption"] and "goes to the left" in first["fields"]["caption"]
    for r in answer["results"]:
        assert r["moments"] and r["score"] == pytest.approx(r["moments"][0]["score"], abs=1e-5)
        media = c.get(r["media_url"], headers={"Range": "bytes=0-99"})
        assert media.status_code == 206 and media.headers["content-type"] == "video/mp4" and len(media.content) == 100
        thumb = c.get(r["thumbnail_url"])
        assert thumb.status_code == 200 and thumb.content[:2] == b"\xff\xd8"  # a JPEG


def check_filtered_long_video(answer, c):
    assert all(r["fields"]["corpus"] == "didemo" for r in answer["results"]) and len(answer["results"]) == 2
    first = answer["results"][0]
    assert first["title"] == "didemo_test_00001" and first["duration"] > 13
    assert (first["moments"][0]["start"], first["moments"][0]["end"]) == (0.0, 4.0)


def check_then(answer, c):
    first = answer["results"][0]
    assert first["title"] == "didemo_test_00001"
    a, b = first["moments"]
    assert (a["start"], a["end"]) == (0.0, 4.0) and (b["start"], b["end"]) == (12.0, 13.625)
    assert a["end"] <= b["start"] <= a["end"] + 10


def check_events_then(answer, c, demo):
    from retrieval.corpora import read_events

    first = answer["results"][0]
    assert first["title"] == "events_test_00000" and first["fields"]["corpus"] == "events"
    truth = next(v for v in read_events(demo.data_dir / "demo") if v.path.endswith("/events_test_00000.mp4"))
    a, b = first["moments"]
    assert (a["start"], a["end"], b["start"], b["end"]) == (0.0, 8.0, 8.0, 12.0)
    left, up = (truth.spans[truth.captions.index(t)] for t in ("a small blue ring moves to the left on a gray "
                                                               "background", "a small blue ring moves up on a gray "
                                                               "background"))
    assert a["start"] < left[1] and left[0] < a["end"] and b["start"] < up[1] and up[0] < b["end"]  # overlap


def check_keyword(answer, c):
    assert set(titles(answer)) == {"video3", "video4", "didemo_test_00002"}
    assert all("hexagon" in r["fields"]["caption"] for r in answer["results"])


def check_example(answer, c):
    assert 19 not in [r["video_id"] for r in answer["results"]] and titles(answer)[0] == "video8"
    assert "large blue square on a dotted background" in answer["results"][0]["fields"]["caption"]


def check_moments_and_vectors(answer, c):
    assert len(answer["results"]) == 3 and all(len(r["moments"]) == 1 for r in answer["results"])
    dim = len(answer["query_vector"])
    assert dim == c.get("/healthz").json()["dim"]
    assert all(len(r["moments"][0]["vector"]) == dim for r in answer["results"])


def check_first_page(answer, c):
    assert len(answer["results"]) == 2 and answer["next_page_token"]


CHECKS = {
    key('{"query": "a large blue circle goes to the left", "k": 3}'): check_quickstart,
    key('{"query": "a large red circle goes to the right", "filters": {"corpus": "didemo"}, "k": 2}'):
        check_filtered_long_video,
    key('{"query": "a large red circle goes to the right", "then": "it contracts", "max_gap": 10, "k": 2}'): check_then,
    key('{"query": "a small blue ring moves to the left on a gray background", "then": "a small blue ring moves up on '
        'a gray background", "k": 2}'): check_events_then,
    key('{"query": "hexagon", "mode": "keyword", "k": 5}'): check_keyword,
    key('{"query": "a medium red cross", "k": 2}'): check_first_page,
    key(f'{{"query": "a medium red cross", "k": 2, "page_token": "{TOKEN_PLACEHOLDER}"}}'): None,  # the next page
    key('{"example": {"video_id": 19, "start": 0, "end": 2}, "k": 3}'): check_example,
    key('{"query": "a medium red cross", "group_by": "moment", "k": 3, "return_vectors": true}'):
        check_moments_and_vectors,
}


def test_every_readme_example_has_a_check_and_every_check_an_example():
    assert sorted(map(key, readme_search_bodies())) == sorted(CHECKS)


def test_the_readme_search_examples_return_what_the_readme_says(demo):
    wait_ready(demo)
    with demo.client() as c:
        previous = None
        for body in readme_search_bodies():
            if TOKEN_PLACEHOLDER in body:  # the page after the previous answer: with it, one request for k = 4
                sent = json.loads(body.replace(TOKEN_PLACEHOLDER, previous["next_page_token"]))
                page = c.post("/search", json=sent)
                assert page.status_code == 200, page.text
                both = c.post("/search", json={**sent, "k": 4, "page_token": None}).json()
                assert [r["video_id"] for r in previous["results"] + page.json()["results"]] == \
                    [r["video_id"] for r in both["results"]]
                stale = c.post("/search", json={**sent, "page_token": "not-a-token"})
                assert stale.status_code == 400 and stale.json()["code"] == "bad_request" and stale.json()["detail"]
                continue
            answer = c.post("/search", json=json.loads(body))
            assert answer.status_code == 200, (body, answer.text)
            check = CHECKS[key(body)]
            check(answer.json(), c, *([demo] if check is check_events_then else []))
            previous = answer.json()


def test_the_readme_image_query_finds_the_video_it_was_taken_from(demo, tmp_path):
    assert "curl -s -F file=@frame.jpg -F 'options={\"k\": 3}' http://127.0.0.1:8000/search/file" in README
    wait_ready(demo)
    with demo.client() as c:
        frame = c.get("/videos/19/thumbnail", params={"t": 1})
        assert frame.status_code == 200
        answer = c.post("/search/file", files={"file": ("frame.jpg", frame.content, "image/jpeg")},
                        data={"options": json.dumps({"k": 3})})
        assert answer.status_code == 200, answer.text
        assert titles(answer.json())[0] == "video18"
