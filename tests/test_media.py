import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from media import (IMAGENET_MEAN, IMAGENET_STD, OpenedVideo, VideoDecodeError, get_frame_indices, load_segment,
                   load_segments, load_video, probe, read_frames_at, segment_windows, train_transform, trimmed_length,
                   video_duration, video_metadata, write_image, write_video)
from test_service_helpers import corrupt_first_frame


def _clip(t=20, h=48, w=64, seed=0):
    """Frames with a moving bar and a per-frame brightness, so every frame differs."""
    rng = np.random.default_rng(seed)
    frames = np.full((t, h, w, 3), 30, np.uint8)
    for i in range(t):
        frames[i, :, :, 0] = 10 * i
        frames[i, 8:20, 2 * i:2 * i + 6, 1] = 250
    frames[:, -8:] = rng.integers(0, 255, (t, 8, w, 3), dtype=np.uint8)
    return frames


@pytest.fixture(scope="module")
def mp4(tmp_path_factory):
    path = tmp_path_factory.mktemp("vid") / "clip.mp4"
    write_video(path, _clip(), fps=8)
    return path


def test_decord_and_pyav_give_identical_frames(mp4):
    a = read_frames_at(mp4, index_range=(0, 100), reader="decord")
    b = read_frames_at(mp4, index_range=(0, 100), reader="av")
    assert a.shape == b.shape == (20, 48, 64, 3)
    assert torch.equal(a, b)
    picked = read_frames_at(mp4, index_range=(3, 6), reader="av")
    assert torch.equal(picked, a[3:6])


def test_a_video_written_in_chunks_is_the_video_written_whole(mp4, tmp_path):
    write_video(tmp_path / "chunks.mp4", (_clip()[i:i + 7] for i in range(0, 20, 7)), fps=8)
    assert torch.equal(read_frames_at(tmp_path / "chunks.mp4", index_range=(0, 100)),
                       read_frames_at(mp4, index_range=(0, 100)))
    with pytest.raises(ValueError, match="no frames"):
        write_video(tmp_path / "none.mp4", iter([]))


def test_frames_decode_close_to_what_was_written(mp4):
    frames = read_frames_at(mp4, index_range=(0, 20)).numpy().astype(int)
    red = frames[:, 30:40, :, 0].mean(axis=(1, 2))
    assert np.all(np.diff(red) > 5)  # brightness ramp survives H.264


def test_metadata_and_duration(mp4):
    meta = video_metadata(mp4, reader="av")
    assert (meta.num_frames, meta.width, meta.height) == (20, 64, 48)
    assert meta.fps == pytest.approx(8.0)
    assert video_duration(mp4) == pytest.approx(2.5)
    assert video_metadata(mp4, reader="decord") == meta


def test_official_indices_on_known_lengths():
    # linspace(0, 100, 9).astype(int) = 0 12 25 37 50 62 75 87 100; middle = (a + b - 1) // 2
    assert get_frame_indices(8, 100, "middle") == [5, 18, 30, 43, 55, 68, 80, 93]
    assert get_frame_indices(4, 8, "middle") == [0, 2, 4, 6]
    assert get_frame_indices(8, 5, "middle") == [0, 1, 2, 3, 4, 4, 4, 4]
    assert get_frame_indices(1, 1, "middle") == [0]
    assert get_frame_indices(4, 40, "rand", fix_start=3) != get_frame_indices(4, 40, "middle")
    import random

    rng = random.Random(0)
    bounds = [0, 12, 25, 37, 50, 62, 75, 87, 100]
    for _ in range(50):
        idx = get_frame_indices(8, 100, "rand", rng=rng)
        assert all(bounds[i] <= j <= bounds[i + 1] - 2 for i, j in enumerate(idx))
    short = get_frame_indices(8, 3, "rand", rng=rng)
    assert short[:3] == [0, 1, 2] and short[3:] == [2] * 5
    with pytest.raises(ValueError, match="sample"):
        get_frame_indices(8, 10, "uniform")
    with pytest.raises(ValueError, match="reader"):
        load_video(b"\x89PNG....", reader="opencv")


def test_trimmed30_caps_the_sampled_range():
    assert trimmed_length(3000, 25.0) == 750
    assert trimmed_length(100, 25.0) == 100


def test_load_video_from_path_bytes_and_filelike(mp4):
    data = mp4.read_bytes()
    a = load_video(mp4, num_frames=4, size=32)
    b = load_video(data, num_frames=4, size=32, reader="av")
    c = load_video(io.BytesIO(data), num_frames=4, size=32)
    assert a.shape == (4, 3, 32, 32) and a.dtype == torch.float32
    assert torch.equal(a, b) and torch.equal(a, c)
    raw = read_frames_at(mp4, index_range=(0, 20)).float() / 255
    # the picked frames are the interval middles [2, 7, 12, 17]; normalization inverts to the raw pixels
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    full = load_video(mp4, num_frames=4, size=48)  # only width changes; compare the red ramp per frame
    red_loaded = (full * std + mean)[:, 0].mean(dim=(1, 2))
    red_raw = raw[[2, 7, 12, 17], :, :, 0].mean(dim=(1, 2))
    assert torch.allclose(red_loaded, red_raw, atol=0.02)


def test_train_transform_shares_one_crop_across_frames():
    frames = torch.arange(16 * 16, dtype=torch.float32).view(1, 1, 16, 16).repeat(3, 3, 1, 1).clamp(0, 255)
    out = train_transform(frames.to(torch.uint8), 8, generator=torch.Generator().manual_seed(0))
    assert out.shape == (3, 3, 8, 8)
    assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])


def test_images_are_one_frame_videos(tmp_path):
    frame = np.zeros((30, 40, 3), np.uint8)
    frame[..., 2] = 200
    write_image(tmp_path / "a.png", frame)
    x = load_video(tmp_path / "a.png", num_frames=3, size=16)
    assert x.shape == (3, 3, 16, 16) and torch.equal(x[0], x[2])
    assert video_metadata((tmp_path / "a.png").read_bytes()).num_frames == 1
    write_image(tmp_path / "b.jpg", frame, codec="mjpeg")
    assert read_frames_at(tmp_path / "b.jpg", timestamps=[0.0])[0, 5, 5, 2] > 190


def test_segments_cover_long_videos(mp4):
    assert segment_windows(25, 8, 4)[-1] == (17.0, 25.0)
    assert segment_windows(3, 8, 4) == [(0.0, 3.0)]
    segs = load_segments(mp4, [(1.0, 2.0), (0.0, 2.5)], num_frames=4, size=32, reader="av")
    whole = load_video(mp4, num_frames=20, size=32)
    assert segs.shape == (2, 4, 3, 32, 32)
    # frames 8..15 are [1 s, 2 s); middles of 4 intervals of 8 -> 8, 10, 12, 14
    assert torch.equal(segs[0], whole[[8, 10, 12, 14]])
    assert torch.equal(segs[1], load_video(mp4, num_frames=4, size=32))
    assert torch.equal(load_segment(mp4, 1.0, 2.0, num_frames=4, size=32), segs[0])


@pytest.mark.parametrize("reader", [None, "decord", "av"])
def test_bad_inputs_raise_video_decode_error(tmp_path, mp4, reader):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video" * 50)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(mp4.read_bytes()[:2000])
    cases = {tmp_path / "missing.mp4": "not found", empty: "empty", junk: "cannot decode", truncated: "cannot decode"}
    for path, reason in cases.items():
        with pytest.raises(VideoDecodeError, match=reason) as err:
            load_video(path, num_frames=2, size=16, reader=reader)
        assert path.name in str(err.value)
    with pytest.raises(VideoDecodeError, match="empty"):
        load_video(b"", reader=reader)
    with pytest.raises(VideoDecodeError, match="upload.mp4"):
        buf = io.BytesIO(b"garbage" * 10)
        buf.name = "upload.mp4"
        load_video(buf, reader=reader)


def test_widths_decord_cannot_copy_fall_back_to_pyav(tmp_path):
    path = tmp_path / "narrow.mp4"
    write_video(path, _clip(t=6, h=40, w=48), fps=8)
    frames = read_frames_at(path, index_range=(0, 6))
    assert frames.shape == (6, 40, 48, 3)
    assert torch.equal(frames, read_frames_at(path, index_range=(0, 6), reader="av"))


def test_a_damaged_first_frame_is_a_decode_error_that_names_no_server_path(tmp_path, mp4):
    bad = corrupt_first_frame(mp4, tmp_path / "bad.mp4")
    for read in (lambda: OpenedVideo(bad, "decord"), lambda: load_segment(bad, 0, 1, num_frames=4, size=16)):
        with pytest.raises(VideoDecodeError) as err:
            read()
        assert str(tmp_path) not in err.value.reason and "/github/" not in err.value.reason, err.value.reason


def test_probe_reads_headers_and_tells_stills_from_videos(tmp_path, mp4):
    meta = probe(mp4)
    assert (meta.num_frames, meta.fps, meta.width, meta.height, meta.still) == (20, 8.0, 64, 48, False)
    write_image(tmp_path / "a.png", _clip(t=1)[0])
    (tmp_path / "a.bin").write_bytes((tmp_path / "a.png").read_bytes())  # a still whatever its name
    for still in ("a.png", "a.bin"):
        meta = probe(tmp_path / still)
        assert meta.still and (meta.num_frames, meta.width, meta.height) == (1, 64, 48)
    with pytest.raises(VideoDecodeError, match="cannot decode"):
        probe(tmp_path / "missing.mp4")


def _peak_growth_mb(setup: str, measured: str) -> float:
    """Peak resident memory that `measured` adds after `setup`, in a fresh interpreter, in MB."""
    script = (f"import resource\n{setup}\nbase = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n{measured}\n"
              "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr[-2000:]
    return float(out.stdout.strip().splitlines()[-1])


def test_probe_decodes_no_frame_beyond_its_pixel_limit(tmp_path):
    big = tmp_path / "big.png"
    write_image(big, np.zeros((6000, 6000, 3), np.uint8))  # 108 MB of pixels in a file of a few hundred KB
    with pytest.raises(VideoDecodeError, match="more than 1000000 pixels"):
        probe(big, max_pixels=1_000_000)
    grown = _peak_growth_mb("from media import probe", f"try:\n    probe({str(big)!r}, max_pixels=1_000_000)\n"
                                                       "except Exception:\n    pass")
    assert grown < 50, f"probing grew memory by {grown:.0f} MB"
    assert probe(big).width == 6000  # without a limit the still is decoded to learn its size


def test_high_resolution_windows_are_decoded_one_frame_at_a_time(tmp_path):
    path = tmp_path / "hi.mp4"
    frames = np.zeros((16, 2048, 2048, 3), np.uint8)
    frames[:, :64, :64] = 200
    write_video(path, frames, fps=8, crf=40)
    window_as_float_mb = frames.size * 4 / 2**20  # what decoding the window whole, then converting, would hold
    grown = _peak_growth_mb("from pathlib import Path\n"
                            "from media import OpenedVideo, load_segments, write_thumbnails\n"
                            f"OpenedVideo({str(path)!r}, None)",
                            f"load_segments({str(path)!r}, [(0, 2)], num_frames=16, size=32)\n"
                            f"write_thumbnails({str(path)!r}, [i / 8 for i in range(16)], Path({str(tmp_path)!r}) / "
                            "'thumbs', 64)")
    assert grown < window_as_float_mb / 2, f"decoding grew memory by {grown:.0f} MB"
    assert len(list((tmp_path / "thumbs").glob("*.jpg"))) == 16
