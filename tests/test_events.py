"""The events split (videos of several events in order, each with its order-swapped twin) and the two ways of scoring
"A then B" that benchmarks/bench_order.py compares: in order (the service's) and as a bag of moments."""
import hashlib
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from index import FaissLibrary, IndexConfig, NewVideo
from index.moments import ordered_pair, unordered_pair
from index.records import normalize
from index.search import Query, search
from media import read_frames_at, video_duration
from retrieval.corpora import AnnotationError, load_benchmark, read_events
from retrieval.synth import SynthConfig, generate
from retrieval.synth.__main__ import parse_args
from retrieval.synth.caption import phrase
from retrieval.synth.writer import CUT_SAFE_KINDS, plan_corpus

FPS = 8.0
ONLY_EVENTS = dict(webvid=0, cc3m=0, msrvtt_train=0, msrvtt_test=0, msvd_train=0, msvd_test=0, lsmdc_train=0,
                   lsmdc_test=0, didemo_train=0, didemo_test=0, anet_train=0, anet_val=0)


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    root = tmp_path_factory.mktemp("events")
    cfg = SynthConfig(out=str(root), size=32, fps=FPS, events_test=6, events_seconds=(2.0, 3.0), workers=1,
                      **ONLY_EVENTS)
    generate(cfg, progress=False)
    return root, cfg, read_events(root)


def _frames(path):
    return read_frames_at(path, index_range=(0, 10_000))


def test_every_video_decodes_and_comes_with_its_twin(split):
    root, cfg, videos = split
    assert len(videos) == 6
    groups: dict[str, list] = {}
    for v in videos:
        frames = _frames(v.path)
        count = len(v.captions)
        assert count in (2, 3) and len(v.spans) == count
        assert len(frames) % count == 0 and abs(video_duration(v.path) - len(frames) / FPS) < 1e-6
        groups.setdefault(v.group, []).append(v)
    bench = load_benchmark("events", root)  # also a paragraph benchmark with its swapped pairs
    assert sorted(bench.temporal.values()) == ["swapped"] * 3 and len(bench.videos) == 6
    for first, twin in groups.values():
        assert twin.captions == first.captions[::-1] and first.captions != twin.captions
        assert twin.spans == first.spans
        a, b = _frames(first.path), _frames(twin.path)
        parts = list(torch.chunk(a, len(first.captions)))
        assert torch.equal(b, torch.cat(parts[::-1]))  # the same parts (lossless), in reverse order
        assert torch.equal(a.float().mean(0), b.float().mean(0))  # a frame-averaging model sees no difference


def test_spans_cover_exactly_the_frames_where_something_happens(split):
    """Inside each span consecutive frames differ (the event runs); in the idle time around it they are equal."""
    _, _, videos = split
    for v in videos:
        frames = _frames(v.path)
        part = len(frames) // len(v.captions)
        for t in range(len(frames) - 1):
            if (t + 1) % part == 0:
                continue  # the cut between two parts
            start, end = t / FPS, (t + 1) / FPS
            inside = any(s - 1e-6 <= start and end <= e + 1e-6 for s, e in v.spans)
            touches = any(start < e + 1 / FPS and end > s - 1 / FPS for s, e in v.spans)
            moved = not torch.equal(frames[t], frames[t + 1])
            if inside:
                assert moved, (v.path, t)
            elif not touches:
                assert not moved, (v.path, t)


def test_captions_name_each_event_of_the_plan_in_order(split):
    _, cfg, videos = split
    clips = plan_corpus(replace(cfg, out="unused"))[("events", "test")]
    for clip, v in zip(clips, videos):
        assert all(e.kind in CUT_SAFE_KINDS for e in clip.scene.events)
        subject = f"a {clip.scene.size} {clip.scene.color} {clip.scene.shape}"
        for caption, event in zip(v.captions, clip.scene.events):
            assert caption == f"{subject} {phrase(event)} on a {clip.scene.background} background"
        if clip.frames_of is None:  # the source's own timeline: event i runs between its span's ends, to a frame
            u = lambda seconds: seconds * FPS / (clip.num_frames - 1)  # noqa: E731 (frame t shows u = t / (F - 1))
            for i, (s, e) in enumerate(v.spans):
                assert clip.scene._progress(u(s - 1 / FPS))[i] == 0.0 and clip.scene._progress(u(e + 1 / FPS))[i] == 1.0
                assert clip.scene._progress(u((s + e) / 2))[i] == pytest.approx(0.5, abs=0.1)


def _digest(root, skip: str):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != "manifest.json" and skip not in p.as_posix():
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_other_splits_are_unchanged_by_the_events_split(tmp_path):
    generate(SynthConfig.tiny(tmp_path / "with"), progress=False)
    generate(SynthConfig.tiny(tmp_path / "without", events_test=0), progress=False)
    assert (tmp_path / "with" / "Events").is_dir() and not (tmp_path / "without" / "Events").exists()
    assert _digest(tmp_path / "with", "vents") == _digest(tmp_path / "without", "vents")
    cfg, _ = parse_args(["--out", str(tmp_path), "--events-test", "8", "--events-seconds", "7", "8"])
    assert (cfg.events_test, cfg.events_seconds) == (8, (7.0, 8.0))
    with pytest.raises(ValueError, match="even"):
        SynthConfig(out=str(tmp_path), events_test=3)


def test_read_events_refuses_a_record_without_events(tmp_path, split):
    root, _, _ = split
    records = json.loads((root / "anno_downstream" / "events_ret_test.json").read_text())
    del records[1]["events"]
    (tmp_path / "anno_downstream").mkdir()
    (tmp_path / "anno_downstream" / "events_ret_test.json").write_text(json.dumps(records))
    with pytest.raises(AnnotationError, match="record 1: field 'events'"):
        read_events(tmp_path)


# ---------------------------------------------------------------------------------------- scoring "A then B"

SPANS = [(0.0, 8.0), (4.0, 12.0), (8.0, 16.0)]


def _windows(dim=16):
    """Unit vectors of event A, event B and a window holding half of each."""
    rng = np.random.default_rng(0)
    a, b = normalize(rng.standard_normal((2, dim)))
    return a, b, normalize((a + b)[None])[0]


def test_the_bag_of_moments_ignores_the_order():
    rng = np.random.default_rng(1)
    for _ in range(20):
        first, then = rng.standard_normal(5), rng.standard_normal(5)
        spans = [(4.0 * i, 4.0 * i + 8) for i in range(5)]
        score = unordered_pair(spans, first, then)[2]
        assert unordered_pair(spans, first[::-1], then[::-1])[2] == pytest.approx(score)
        assert unordered_pair(spans, then, first)[2] == pytest.approx(score)
        assert score == pytest.approx((first.max() + then.max()) / 2)


def test_the_ordered_search_ranks_the_right_order_and_the_bag_cannot(tmp_path):
    a, b, mix = _windows()
    right, twin = np.stack([a, mix, b]), np.stack([b, mix, a])
    assert ordered_pair(SPANS, right @ a, right @ b, 10.0) is not None
    assert ordered_pair(SPANS, twin @ a, twin @ b, 10.0) is None  # B comes first: no pair in order
    bag = [unordered_pair(SPANS, v @ a, v @ b)[2] for v in (right, twin)]
    assert bag[0] == pytest.approx(bag[1])  # the same windows: the bag of moments ties the two

    library = FaissLibrary(tmp_path, len(a), IndexConfig(kind="flat"))
    try:
        ids = library.add_videos([NewVideo("/right.mp4", 16.0, SPANS, right), NewVideo("/twin.mp4", 16.0, SPANS, twin)])
        page = search(library, [Query(vector=a, then=b, k=10)])[0]
        assert [r.video.id for r in page.results] == [ids[0]]
        first, then = page.results[0].moments
        assert (first.start, then.end) == (0.0, 16.0) and first.end <= then.start
        flipped = search(library, [Query(vector=b, then=a, k=10)])[0]
        assert [r.video.id for r in flipped.results] == [ids[1]]
    finally:
        library.close()
