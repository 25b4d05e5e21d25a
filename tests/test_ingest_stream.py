"""Ingestion decodes each file once: `Embedder.embed_video(s)` (one streaming pass a file, a decoder thread ahead of
the encoder, windows of several videos in one batch) against its plain reference `embed_video_per_window` (every
window decoded on its own), on real MP4s through the real decoders."""
import threading
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from encoders.video_text import load_embedder
from media import (OpenedVideo, VideoDecodeError, segment_windows, stream_segments, thumbnail_taps, write_thumbnails,
                   write_video)
from media.clips import window_frame_indices
from test_media import _peak_growth_mb
from test_service_helpers import corrupt_middle, save_tiny_model, write_clip


@pytest.fixture(scope="module")
def embedder(tmp_path_factory):
    return load_embedder(str(save_tiny_model(tmp_path_factory.mktemp("model"))))


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    return {"short": write_clip(root / "short.mp4", 1.5, 0),  # shorter than every window: one partial window
            "odd": write_clip(root / "odd.mp4", 7.3, 1, fps=10, size=48),  # a last window that does not fit
            "long": write_clip(root / "long.mp4", 12, 2, fps=8, size=32),
            "bframes": write_bframes(root / "bframes.mp4")}  # stored out of order; most B-frames skippable


def write_bframes(path: Path, seconds: float = 6.0, fps: int = 10, size: int = 64, fmt: str | None = None) -> Path:
    """libx264 at its default settings (3 B-frames, B-pyramid; `media.write_video` makes none): packets in decode
    order, not presentation order, and most B-frames referenced by no other frame."""
    rng = np.random.default_rng(5)
    base = rng.integers(0, 256, (size, size, 3))
    with av.open(str(path), mode="w", format=fmt) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for k in range(int(seconds * fps)):
            image = (np.roll(base, 2 * k, axis=1) + rng.integers(-20, 20, (size, size, 3))).clip(0, 255)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image.astype(np.uint8), format="rgb24")))
        container.mux(stream.encode())
    return path


def write_variable_rate(path: Path, seconds: float = 6.0) -> Path:
    """An MP4 whose frames come at irregular times (1/4 s, then 1/16 s, ...): a variable frame rate; a moving
    picture, so that libx264 (default settings) makes B-frames."""
    rng = np.random.default_rng(3)
    base = rng.integers(0, 256, (32, 32, 3))
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        t, n = 0, 0
        while t < seconds * 1000:
            image = (np.roll(base, n, axis=0) + rng.integers(-20, 20, (32, 32, 3))).clip(0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            container.mux(stream.encode(frame))
            t, n = t + (250 if n % 3 == 0 else 62), n + 1
        container.mux(stream.encode())
    return path


WINDOWS = [(2.0, 1.0), (1.0, 2.0), (2.5, 0.7), (3.0, 3.0), (20.0, 5.0)]  # stride <, >, = window; longer than all


@pytest.mark.parametrize("window,stride", WINDOWS)
def test_one_pass_equals_a_decode_per_window(embedder, clips, window, stride):
    for path in clips.values():
        fast = embedder.embed_video(path, window, stride)
        plain = embedder.embed_video_per_window(path, window, stride)
        assert fast.spans == plain.spans and fast.duration == plain.duration
        np.testing.assert_allclose(fast.vectors, plain.vectors, rtol=0, atol=1e-6)


def test_variable_frame_rate_equals_the_plain_path(embedder, tmp_path):
    path = write_variable_rate(tmp_path / "vfr.mp4")
    with av.open(str(path)) as container:
        times = [f.time for f in container.decode(video=0)]
    assert len(set(np.round(np.diff(times), 3))) > 1, "the file was written at a constant rate"
    for window, stride in ((2.0, 1.0), (1.5, 2.0)):
        np.testing.assert_allclose(embedder.embed_video(path, window, stride).vectors,
                                   embedder.embed_video_per_window(path, window, stride).vectors, rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", ["mp4", "matroska", "mpegts", "h264", "vfr"])
def test_frames_left_out_are_only_those_not_asked_for(tmp_path, kind):
    """PyAV decodes only the frames asked for and those they reference, and knows each frame's index before
    decoding it: every frame it returns is, bit for bit, the frame at that index of a full decode. A raw H.264
    stream has no timestamps to rank packets by: it is decoded in full."""
    path = write_variable_rate(tmp_path / "vfr.mp4") if kind == "vfr" else write_bframes(tmp_path / "b", fmt=kind)
    with av.open(str(path)) as container:
        full = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    video = OpenedVideo(path, "av")
    n = video.meta.num_frames
    assert n == len(full) and not list(video.iter_frames([]))
    rng = np.random.default_rng(0)
    sets = [[0], [n - 1], [n // 2, n // 2 + 1], *(sorted(rng.choice(n, k, replace=False)) for k in (3, 9, n // 2))]
    for window, stride in WINDOWS:
        sets.append(sum(window_frame_indices(video.meta, segment_windows(video.meta.duration, window, stride), 8), []))
    for wanted in sets:
        before = video._video.decoded
        got = list(video.iter_frames(wanted))
        assert [i for i, _ in got] == sorted(set(wanted))
        assert all(np.array_equal(frame.numpy(), full[i]) for i, frame in got)
        decoded = video._video.decoded - before
        if kind == "h264":
            assert decoded == max(wanted) + 1
        elif max(wanted) >= 20 and len(set(wanted)) < n // 4:  # the lever: B-frames nobody asked for, not decoded
            assert decoded < (0.9 if kind == "vfr" else 0.7) * (max(wanted) + 1), (wanted, decoded)


def test_a_frame_whose_pts_is_no_packets_ends_skipping(tmp_path, monkeypatch):
    """When the decoder gives a frame whose pts the packets did not announce, the ranks are not indices: the frames
    not yet given are found by a full decode, as without skipping."""
    import media.readers

    path = write_bframes(tmp_path / "b.mp4")
    with av.open(str(path)) as container:
        full = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    real = media.readers._presentation_pts
    monkeypatch.setattr(media.readers, "_presentation_pts", lambda *a: real(*a)[:-1] + [10**9])  # the last is off
    video = OpenedVideo(path, "av")
    n = video.meta.num_frames
    got = list(video.iter_frames([3, 40, n - 1]))
    assert [i for i, _ in got] == [3, 40, n - 1]
    assert all(np.array_equal(frame.numpy(), full[i]) for i, frame in got)
    assert video._video.decoded > n  # the first two from the skipping pass, the last from a full one


def test_tokens_are_those_of_each_window_decoded_alone(embedder, clips):
    emb = embedder.embed_video(clips["odd"], 2.0, 1.5, with_tokens=True)
    assert emb.tokens.shape[0] == len(emb.spans)
    for k in (0, len(emb.spans) - 1):
        alone = embedder.clip_tokens(embedder.load_clip(clips["odd"], *emb.spans[k])[None])[0]
        np.testing.assert_allclose(emb.tokens[k].astype(np.float32), alone.astype(np.float32), rtol=0, atol=1e-3)


@pytest.mark.parametrize("writer", [lambda p: write_clip(p, 12, 4, size=64), lambda p: write_bframes(p, 12)])
def test_a_file_corrupt_mid_way_fails_as_the_plain_path_does(embedder, tmp_path, writer):
    bad = corrupt_middle(writer(tmp_path / "src.mp4"), tmp_path / "bad.mp4")
    with pytest.raises(VideoDecodeError) as plain:
        embedder.embed_video_per_window(bad, 2.0, 1.0)
    with pytest.raises(VideoDecodeError) as fast:
        embedder.embed_video(bad, 2.0, 1.0)
    assert fast.value.reason == plain.value.reason and "failed decoding" in fast.value.reason
    assert str(tmp_path) not in fast.value.reason


def test_several_videos_share_batches_and_a_bad_one_spoils_only_itself(embedder, clips, tmp_path):
    bad = corrupt_middle(write_clip(tmp_path / "src.mp4", 12, 4, size=64), tmp_path / "bad.mp4")
    sources = [clips["short"], clips["odd"], bad, tmp_path / "missing.mp4", clips["long"]]
    done = {}
    results = list(embedder.embed_videos(sources, 2.0, 1.0, batch=5,
                                         progress=lambda i, n, total: done.__setitem__(i, (n, total))))
    assert [src for src, _ in results] == sources
    for src, emb in results:
        if src in (bad, tmp_path / "missing.mp4"):
            assert isinstance(emb, VideoDecodeError)
            continue
        plain = embedder.embed_video_per_window(src, 2.0, 1.0)
        assert emb.spans == plain.spans
        np.testing.assert_allclose(emb.vectors, plain.vectors, rtol=0, atol=1e-6)
    windows = {i: len(emb.spans) for i, (_, emb) in enumerate(results) if not isinstance(emb, Exception)}
    assert {i: done[i] for i in windows} == {i: (n, n) for i, n in windows.items()}
    # the short clip's single window rode in a batch with the next video's windows
    assert done[0] == (1, 1) and len(results[1][1].spans) > 4


def test_each_file_is_decoded_once_with_its_thumbnails(embedder, clips, tmp_path, monkeypatch):
    passes = []
    real = OpenedVideo.iter_frames
    monkeypatch.setattr(OpenedVideo, "iter_frames", lambda self, idx: passes.append(self.name) or real(self, idx))
    path = clips["odd"]

    def thumbs(video, spans):
        return thumbnail_taps(video, [(s + e) / 2 for s, e in spans], tmp_path / "one", 24)[0]

    emb = embedder.embed_video(path, 2.0, 1.0, frame_taps=thumbs)
    assert len(passes) == 1
    embedder.embed_video_per_window(path, 2.0, 1.0)
    assert len(passes) == 1 + len(emb.spans)  # the plain path: a decode a window
    # the thumbnails of the one pass are, byte for byte, those of a decode of their own
    write_thumbnails(path, [(s + e) / 2 for s, e in emb.spans], tmp_path / "two", 24)
    one, two = sorted((tmp_path / "one").iterdir()), sorted((tmp_path / "two").iterdir())
    assert [p.name for p in one] == [p.name for p in two] and len(one) == len(emb.spans)
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(one, two))


def test_clips_stream_out_before_the_video_ends(clips):
    video = OpenedVideo(clips["long"], None)
    spans = [(float(s), float(s) + 2) for s in range(0, 10, 2)]
    seen = []
    last = video.meta.num_frames - 1
    for clip in stream_segments(video, spans, 4, 16, taps={last: lambda frame: seen.append("last frame")}):
        seen.append(clip.shape)
    assert seen[0] == (4, 3, 16, 16) and seen.index("last frame") == len(spans)
    assert window_frame_indices(video.meta, spans, 4)[0] == [1, 5, 9, 13]  # 16 frames: interval middles


def test_memory_does_not_grow_with_the_video(tmp_path):
    """80 s at 8 fps, 40 windows of 8 frames resized to 224^2: 190 MB of clips if they were all held."""
    path = tmp_path / "long.mp4"
    rng = np.random.default_rng(0)
    write_video(path, rng.integers(0, 256, (640, 32, 32, 3), dtype=np.uint8), fps=8, crf=40)
    all_clips_mb = 40 * 8 * 3 * 224 * 224 * 4 / 2**20
    grown = _peak_growth_mb("from media import OpenedVideo, stream_segments\n"
                            f"video = OpenedVideo({str(path)!r}, None)",
                            "n = sum(1 for _ in stream_segments(video, [(2.0 * k, 2.0 * k + 2) for k in range(40)], "
                            "8, 224))\nassert n == 40")
    assert grown < all_clips_mb / 4, f"streaming 40 windows grew memory by {grown:.0f} MB"


def test_a_consumer_that_stops_early_stops_the_decoder(embedder, clips):
    results = embedder.embed_videos([clips["long"]] * 6, 2.0, 1.0, batch=2)
    first = next(results)
    results.close()  # joins the decoder thread, which must not stay blocked on a full queue
    assert first[0] == clips["long"] and not isinstance(first[1], Exception)
    assert not [t for t in threading.enumerate() if t.name == "embedder-decode"]
