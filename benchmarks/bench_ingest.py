"""Hours of video indexed per hour of wall time: ingestion (`Embedder.embed_videos`: one decoding pass a file, a
decoder thread ahead of the encoder, windows of several videos per batch) next to the encoder-only bound (the same
windows decoded beforehand, encoder forwards only) and the old per-window path (`embed_video_per_window`: the file
opened and sought again for every window), for the demo model (its own frame size and frames per clip) and
videomamba_tiny at 8 x 224^2 (random weights), all in one run; the frames the one pass decodes per window; then the
peak RSS of ingesting one long video.

    .venv/bin/python benchmarks/bench_ingest.py [--videos 3 --seconds 32 --height 360 --fps 25] [--long-minutes 10]
                                                [--bframes]

The videos are synthetic H.264 (a textured background panning, plus noise), written to a temporary folder by
`media.write_video` (no B-frames: every frame is a reference, so the decoder can skip none), or with `--bframes` by
libx264 at its default settings (3 B-frames, as most encoders store video: the ones no window samples are skipped).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def panning_frames(seconds: float, height: int, fps: float, seed: int, chunk: int = 250):
    """Chunks of (T, H, W, 3) uint8 frames, 16:9: a smooth random texture panning 2 px a frame, with some noise."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    width = height * 16 // 9 // 2 * 2
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.integers(0, 256, (1, 3, height // 8, width // 4)).astype(np.float32))
    texture = F.interpolate(coarse, size=(height, 2 * width), mode="bilinear")[0].permute(1, 2, 0).numpy()
    total = int(seconds * fps)
    for first in range(0, total, chunk):
        out = np.empty((min(chunk, total - first), height, width, 3), np.uint8)
        for k in range(len(out)):
            x = (2 * (first + k)) % width
            noise = rng.integers(-12, 12, (height, width, 1))
            out[k] = (texture[:, x:x + width] + noise).clip(0, 255)
        yield out


def write_bframes(path: Path, chunks, fps: float, crf: int) -> None:
    """Like `media.write_video`, but libx264's default GOP (B-frames, B-pyramid) instead of zerolatency's."""
    import av

    with av.open(str(path), mode="w", format="mp4") as container:
        stream = None
        for chunk in chunks:
            if stream is None:
                stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
                stream.width, stream.height, stream.pix_fmt = chunk.shape[2], chunk.shape[1], "yuv420p"
                stream.options = {"crf": str(crf), "preset": "veryfast"}
            for frame in chunk:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def decoded_per_window(videos, window: float, stride: float, num_frames: int, size: int) -> tuple[float, float]:
    """(frames the one pass's decoder produced, frames in the files) per window, over `videos`."""
    from media import OpenedVideo, segment_windows, stream_segments

    decoded = frames = windows = 0
    for path in videos:
        video = OpenedVideo(path, "av")
        spans = segment_windows(video.meta.duration, window, stride)
        for _ in stream_segments(video, spans, num_frames, size):
            pass
        decoded, frames, windows = decoded + video._video.decoded, frames + video.meta.num_frames, windows + len(spans)
    return decoded / windows, frames / windows


def make_embedder(kind: str):
    from encoders.video_text import VideoTextConfig, build_video_text_model, demo_model_path, load_embedder
    from encoders.video_text.embedder import Embedder

    if kind == "demo":
        return load_embedder(demo_model_path())
    import torch

    torch.manual_seed(0)
    model, tokenizer = build_video_text_model(VideoTextConfig(
        vision_model="videomamba_tiny", vision_overrides={"num_frames": 8, "img_size": 224}, text_layers=1,
        fusion_layers=1, mlm=False))
    return Embedder(model, tokenizer)


def hours_per_hour(embedder, videos, window: float, stride: float, seconds: float, rounds: int) -> dict:
    """Video seconds per wall second, and per CPU second of this process (all its threads), for the three paths:
    the best of `rounds` rounds (the paths alternate within a round, so a burst of load from other work hits one
    round, not one path), after two warm-up forwards. On a shared machine the CPU figures are the steadier ones."""
    import torch

    from encoders.video_text.embedder import BATCH
    from media import OpenedVideo, segment_windows, stream_segments

    clips = []
    for path in videos:
        video = OpenedVideo(path, None)
        clips += stream_segments(video, segment_windows(video.meta.duration, window, stride), embedder.num_frames,
                                 embedder.frame_size)
    for _ in range(2):
        embedder.embed_clips(torch.stack(clips[:BATCH]))  # warm-up (kernel load, allocator)

    def encoder_only():
        for i in range(0, len(clips), BATCH):
            embedder.embed_clips(torch.stack(clips[i:i + BATCH]))

    def one_pass():
        assert all(not isinstance(e, Exception) for _, e in embedder.embed_videos(videos, window, stride))

    def per_window():
        for path in videos:
            embedder.embed_video_per_window(path, window, stride)

    best, cpu = {}, {}
    for _ in range(rounds):
        for name, run in (("encoder only", encoder_only), ("one pass", one_pass), ("per window", per_window)):
            start, cpu_start = time.perf_counter(), time.process_time()
            run()
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - start)
            cpu[name] = min(cpu.get(name, float("inf")), time.process_time() - cpu_start)
    return {name: seconds / wall for name, wall in best.items()}, {name: seconds / s for name, s in cpu.items()}


RSS_SCRIPT = """
import sys, threading, time
sys.path.insert(0, {root!r})
from encoders.video_text import demo_model_path, load_embedder

def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20

embedder = load_embedder(demo_model_path())
embedder.embed_clips(embedder.load_clip({path!r}, 0, 1)[None])
base, peak, done, at = rss_mb(), [0.0], threading.Event(), {{}}

def sample():
    while not done.is_set():
        peak[0] = max(peak[0], rss_mb())
        time.sleep(0.02)

def progress(windows, total):
    at.setdefault(round(4 * windows / total), rss_mb())  # RSS near each quarter of the video

threading.Thread(target=sample, daemon=True).start()
start = time.perf_counter()
emb = embedder.embed_video({path!r}, {window}, {stride}, progress=progress)
wall = time.perf_counter() - start
done.set()
print(base, max(peak[0], rss_mb()), len(emb.spans), wall, *(at.get(q, 0.0) for q in (1, 2, 3, 4)))
"""


def peak_rss(path: Path, window: float, stride: float) -> tuple[float, float, int, float, list[float]]:
    """(RSS MB with the demo model loaded and warm, peak RSS MB while ingesting `path` (sampled every 20 ms),
    windows, wall s, RSS MB when a quarter, half, three quarters and all of the windows were embedded), in a fresh
    process."""
    script = RSS_SCRIPT.format(root=str(ROOT), path=str(path), window=window, stride=stride)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT)
    base, peak, windows, wall, *quarters = out.stdout.split()
    return float(base), float(peak), int(windows), float(wall), [float(q) for q in quarters]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=32.0, help="length of each video")
    parser.add_argument("--height", type=int, default=360, help="frame height (16:9)")
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--window", type=float, default=8.0)
    parser.add_argument("--stride", type=float, default=4.0)
    parser.add_argument("--models", nargs="+", default=["demo", "videomamba_tiny"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--long-minutes", type=float, default=10.0, help="the long video of the RSS check (0: skip)")
    parser.add_argument("--long-height", type=int, default=224)
    parser.add_argument("--bframes", action="store_true", help="write the videos with libx264's default B-frames")
    args = parser.parse_args()
    import torch

    from media import write_video

    with tempfile.TemporaryDirectory() as tmp:
        videos = []
        for seed in range(args.videos):
            videos.append(Path(tmp) / f"v{seed}.mp4")
            write = write_bframes if args.bframes else write_video
            write(videos[-1], panning_frames(args.seconds, args.height, args.fps, seed), fps=args.fps, crf=23)
        total = args.videos * args.seconds
        print(f"# {args.videos} videos x {args.seconds:g} s, {args.height}p {args.fps:g} fps H.264 "
              f"({'B-frames' if args.bframes else 'no B-frames'}); windows "
              f"{args.window:g} s every {args.stride:g} s; {torch.get_num_threads()} torch threads; hours of video "
              f"indexed per wall hour and per CPU hour of this process, best of {args.rounds} rounds")
        print("| model | clip | per | encoder only | one pass | per window | one pass / encoder only | "
              "one pass / per window |")
        print("|---|---|---|---|---|---|---|---|")
        for kind in args.models:
            embedder = make_embedder(kind)
            rates = hours_per_hour(embedder, videos, args.window, args.stride, total, args.rounds)
            for per, rate in zip(("wall hour", "CPU hour"), rates):
                print(f"| {kind} | {embedder.num_frames} x {embedder.frame_size}^2 | {per} | "
                      f"{rate['encoder only']:.1f} | {rate['one pass']:.1f} | {rate['per window']:.1f} | "
                      f"{rate['one pass'] / rate['encoder only']:.2f} | {rate['one pass'] / rate['per window']:.2f} |",
                      flush=True)
        decoded, frames = decoded_per_window(videos, args.window, args.stride, embedder.num_frames,
                                             embedder.frame_size)
        print(f"# the one pass's decoder produces {decoded:.1f} frames a window ({frames:.1f} frames in the files a "
              f"window, {embedder.num_frames} sampled)", flush=True)
        if args.long_minutes > 0:
            for minutes in (args.long_minutes / 4, args.long_minutes):
                long = Path(tmp) / f"long{minutes:g}.mp4"
                write_video(long, panning_frames(minutes * 60, args.long_height, args.fps, 9), fps=args.fps, crf=23)
                base, peak, windows, wall, quarters = peak_rss(long, args.window, args.stride)
                print(f"# demo model, one {minutes:g} min {args.long_height}p {args.fps:g} fps video "
                      f"({long.stat().st_size / 2**20:.0f} MB, {windows} windows, {wall:.0f} s): peak RSS while "
                      f"ingesting {peak:.0f} MB (before: {base:.0f} MB; after 1/4, 1/2, 3/4, all of it: "
                      f"{', '.join(f'{q:.0f}' for q in quarters)} MB)", flush=True)


if __name__ == "__main__":
    main()
