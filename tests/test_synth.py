import hashlib
from dataclasses import replace

import numpy as np
import pytest
import torch

from media import read_frames_at
from retrieval.corpora import load_benchmark, load_pairs
from retrieval.synth import SynthConfig, generate
from retrieval.synth.writer import plan_clips
from retrieval.synth.__main__ import parse_args
from retrieval.synth.caption import caption, paragraph, paraphrases
from retrieval.synth.render import render_frames
from retrieval.synth.scene import COLORS, ROUND_SHAPES, SHAPES, Event, Scene, in_test_domain, sample_scene


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    manifest = generate(SynthConfig.tiny(root), progress=False)
    return root, manifest


def _digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != "manifest.json":
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_same_seed_same_corpus_whatever_the_workers(tmp_path, corpus):
    root, _ = corpus
    generate(SynthConfig.tiny(tmp_path / "again", workers=2), progress=False)
    assert _digest(tmp_path / "again") == _digest(root)
    generate(SynthConfig.tiny(tmp_path / "other", seed=1), progress=False)
    assert _digest(tmp_path / "other") != _digest(root)


def test_reversed_scene_renders_the_frames_backwards():
    rng = np.random.default_rng(0)
    for _ in range(30):
        scene = sample_scene(rng, int(rng.integers(1, 3)))
        frames = render_frames(scene, 9, 32)
        assert np.array_equal(render_frames(scene.reversed(), 9, 32), frames[::-1])
        assert caption(scene.reversed()) != caption(scene)
        assert scene.reversed().reversed().key() == scene.key()


def test_hand_checked_reversals():
    base = dict(shape="star", background="gray", size="small", x=0.73, y=0.5, span=0.46)
    s = Scene(color="red", events=(Event("move", "left"), Event("recolor", "blue")), **base)
    assert caption(s) == "a small red star moves to the left, then turns blue on a gray background"
    assert caption(s.reversed()) == "a small blue star turns red, then moves to the right on a gray background"
    assert caption(s.swapped()) == "a small red star turns blue, then moves to the left on a gray background"
    g = Scene(color="red", events=(Event("grow"), Event("rotate", "cw")), **base)
    assert caption(g.reversed()) == ("a medium red star rotates counterclockwise, then shrinks on a gray "
                                     "background")
    a = Scene(color="red", visible=False, events=(Event("appear"),), **base)
    assert caption(a.reversed()) == "a small red star disappears on a gray background"


def test_reversed_groups_in_files_are_exact_frame_reversals(corpus):
    root, _ = corpus
    bench = load_benchmark("msrvtt", root)
    reversed_groups = [g for g, kind in bench.temporal.items() if kind == "reversed"]
    assert reversed_groups
    for g in reversed_groups:
        a, b = bench.groups[g]
        fa = read_frames_at(bench.videos[a], index_range=(0, 100))
        fb = read_frames_at(bench.videos[b], index_range=(0, 100))
        assert torch.equal(fa, fb.flip(0))  # lossless H.264: exactly the same frames, reversed
        assert torch.equal(fa.float().mean(0), fb.float().mean(0))  # a frame-averaging model sees no difference
        assert bench.texts[bench.vid2txt[a][0]] != bench.texts[bench.vid2txt[b][0]]


def test_swapped_groups_are_their_pairs_halves_exchanged(corpus):
    root, _ = corpus
    pairs = load_pairs("webvid", root, "train").items + load_pairs("msrvtt", root, "train").items
    groups: dict[str, list] = {}
    for p in pairs:
        if p.temporal == "swapped":
            groups.setdefault(p.group, []).append(p)
    assert groups
    for a, b in groups.values():
        assert a.caption != b.caption
        fa = read_frames_at(a.media, index_range=(0, 100))
        fb = read_frames_at(b.media, index_range=(0, 100))
        half = len(fa) // 2
        assert torch.equal(fb, torch.cat([fa[half:], fa[:half]]))  # a cut in the middle, halves exchanged
        assert not torch.equal(fa, fb)
        assert torch.equal(fa.float().mean(0), fb.float().mean(0))  # a frame-averaging model sees no difference


def test_swapped_pairs_time_their_events_so_the_halves_are_one_event_each():
    cfg = SynthConfig.tiny("unused", hard_negative_fraction=1.0)
    clips = plan_clips(np.random.default_rng(2), 200, "train", cfg, unique=False, group_prefix="t")
    swapped = [c for c in clips if c.temporal == "swapped"]
    assert swapped
    for c in swapped:
        assert [e.kind in ("move", "rotate") for e in c.scene.events] == [True, True]
        s = c.scene
        assert s.gap == 2 * s.hold and s.events[0].weight == s.events[1].weight
        progress = [s._progress(u) for u in (0.499, 0.501)]
        assert progress == [[1.0, 0.0], [1.0, 0.0]]  # the middle falls inside the gap
    derived = [c for c in swapped if c.frames_of is not None]
    assert len(derived) == len(swapped) // 2 and {c.reorder for c in derived} == {"swap_halves"}
    for c in derived:
        assert c.scene == clips[c.frames_of].scene.swapped()
    with pytest.raises(ValueError, match="even"):
        SynthConfig.tiny("unused", frames=9)


def test_shape_twins_differ_only_in_the_shape_and_stay_in_training():
    cfg = SynthConfig.tiny("unused", shape_twin_fraction=0.4, hard_negative_fraction=0.4)
    clips = plan_clips(np.random.default_rng(5), 300, "train", cfg, unique=False, group_prefix="t")
    kinds = {c.temporal for c in clips}
    assert {"shape", "reversed", "swapped"} <= kinds
    pairs: dict[str, list] = {}
    for c in clips:
        if c.temporal == "shape":
            pairs.setdefault(c.group, []).append(c.scene)
    assert 0.25 < 2 * len(pairs) / len(clips) < 0.55
    for a, b in pairs.values():
        assert a.shape != b.shape and replace(b, shape=a.shape) == a
        assert not in_test_domain(b, cfg.test_fraction)
        if any(e.kind == "rotate" for e in a.events):
            assert b.shape not in ROUND_SHAPES
    without = plan_clips(np.random.default_rng(5), 300, "train", SynthConfig.tiny("unused"), unique=False, group_prefix="t")
    assert "shape" not in {c.temporal for c in without}
    with pytest.raises(ValueError, match="shape_twin_fraction"):
        SynthConfig.tiny("unused", shape_twin_fraction=0.6, hard_negative_fraction=0.5)


def test_test_scenes_are_disjoint_from_training():
    cfg = SynthConfig.tiny("unused")
    rng = np.random.default_rng(3)
    scenes = [sample_scene(rng, 2) for _ in range(400)]
    test = [s for s in scenes if in_test_domain(s, cfg.test_fraction)]
    assert 0 < len(test) < len(scenes)
    for s in test:  # the whole orbit (reversal, swap) stays on the test side
        assert in_test_domain(s.reversed(), cfg.test_fraction)
        assert in_test_domain(s.swapped(), cfg.test_fraction)


def test_splits_have_the_planned_sizes_and_unique_test_captions(corpus):
    root, manifest = corpus
    cfg = SynthConfig.tiny(root)
    assert manifest["splits"]["msrvtt/test"]["files"] == cfg.msrvtt_test
    train, test = load_pairs("msrvtt", root, "train"), load_benchmark("msrvtt", root)
    assert len(train) == cfg.msrvtt_train and len(test.videos) == cfg.msrvtt_test
    assert len(set(test.texts)) == len(test.texts)
    assert not set(test.texts) & {p.caption for p in train.items}


def test_captions_name_every_attribute():
    rng = np.random.default_rng(5)
    for _ in range(50):
        s = sample_scene(rng, 2)
        text = caption(s, rng)
        assert s.color in text and s.shape in text and s.size in text and f"{s.background} background" in text
    s = sample_scene(rng, 1)
    assert len(set(paraphrases(s, 4, rng))) == 4
    long = sample_scene(rng, 5, weights=[3.0] * 5, hold=2.0, gap=1.0)
    sentences = paragraph(long, rng)
    assert len(sentences) == 5 + (long.events[0].kind != "appear")
    assert all(c in COLORS or c in SHAPES for c in [long.color, long.shape])


def test_long_videos_have_the_asked_duration(corpus):
    root, _ = corpus
    from media import video_duration

    bench = load_benchmark("anet", root)
    for path in bench.videos:
        assert 8.0 <= video_duration(path) <= 10.1


def test_cli_arguments_and_validation(tmp_path):
    cfg, progress = parse_args(["--out", str(tmp_path), "--size", "48", "--fps", "12", "--didemo-seconds", "20", "30"])
    assert (cfg.size, cfg.fps, cfg.didemo_seconds, progress) == (48, 12.0, (20.0, 30.0), True)
    assert not parse_args(["--out", str(tmp_path), "--no-progress"])[1]
    with pytest.raises(ValueError, match="size"):
        SynthConfig(out=str(tmp_path), size=33)
