"""Plans every split of the synthetic corpus from one seed, renders the clips in a process pool and writes
the annotation files in each corpus's official format (file names and folders from
:mod:`retrieval.corpora`). Planning is sequential and seeded per split, rendering is a pure function of
the plan, so the output is the same for a seed whatever the number of workers."""
from __future__ import annotations

import csv
import hashlib
import json
import multiprocessing
import time
import zlib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from media import write_image, write_video
from retrieval.corpora import get_corpus
import retrieval.synth.caption as captions
from retrieval.synth.render import render_frames
from retrieval.synth.scene import ROUND_SHAPES, SHAPES, Scene, in_test_domain, sample_scene

# Bumped when the same config would write different files, so caches keyed on the config are not reused.
# 2: swapped-order twins are their pair's halves exchanged (were the events replayed in the other order).
GENERATOR_VERSION = 2


@dataclass
class SynthConfig:
    out: str
    seed: int = 0
    size: int = 64  # frame side, pixels
    fps: float = 8.0
    frames: int = 16  # frames of a short clip (2 s at 8 fps)
    webvid: int = 2000
    cc3m: int = 500
    msrvtt_train: int = 5000
    msrvtt_test: int = 1000
    msvd_train: int = 300
    msvd_test: int = 200
    msvd_captions: int = 5
    lsmdc_train: int = 300
    lsmdc_test: int = 200
    didemo_train: int = 60
    didemo_test: int = 40
    didemo_seconds: tuple[float, float] = (25.0, 30.0)
    anet_train: int = 30
    anet_val: int = 20
    anet_seconds: tuple[float, float] = (60.0, 180.0)
    events_test: int = 0  # videos of 2 or 3 events in order, each with its order-swapped twin (counted); opt-in
    events_seconds: tuple[float, float] = (7.0, 9.0)  # one event's part of such a video, its idle time included
    two_event_fraction: float = 0.5  # short clips with two events ("..., then ...")
    hard_negative_fraction: float = 0.2  # share of clips that belong to a reversed/swapped pair
    shape_twin_fraction: float = 0.0  # share of short clips in a pair that differs only in the shape (training)
    test_fraction: float = 0.15  # share of scene orbits reserved for the test splits
    workers: int = 2
    crf: int = 0  # 0 = lossless H.264, so a derived clip decodes to exactly its source's frames, reordered

    @classmethod
    def tiny(cls, out: str, **overrides) -> "SynthConfig":
        """A corpus of a few dozen small files for tests and smoke runs (about a second to write)."""
        small = dict(size=32, frames=8, webvid=12, cc3m=4, msrvtt_train=12, msrvtt_test=10, msvd_train=6,
                     msvd_test=6, msvd_captions=3, lsmdc_train=6, lsmdc_test=6, didemo_train=2, didemo_test=2,
                     didemo_seconds=(6.0, 8.0), anet_train=2, anet_val=2, anet_seconds=(8.0, 10.0),
                     events_test=2, events_seconds=(2.0, 3.0), hard_negative_fraction=0.5, workers=1)
        return cls(out=str(out), **{**small, **overrides})

    def __post_init__(self):
        if self.size % 2 or self.size < 16:
            raise ValueError(f"size must be even and >= 16, got {self.size}")
        if self.frames < 2 or self.frames % 2:
            raise ValueError(f"frames must be even and >= 2 (a swapped-order twin exchanges the halves), got {self.frames}")
        if self.events_test % 2:
            raise ValueError(f"events_test must be even (every video comes with its twin), got {self.events_test}")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        if not 0 <= self.hard_negative_fraction <= 1:
            raise ValueError(f"hard_negative_fraction must be in [0, 1], got {self.hard_negative_fraction}")
        if not 0 <= self.shape_twin_fraction < 1 or self.hard_negative_fraction + self.shape_twin_fraction > 1:
            raise ValueError("shape_twin_fraction must be in [0, 1) and leave hard_negative_fraction + it <= 1, got "
                             f"{self.shape_twin_fraction} with hard_negative_fraction {self.hard_negative_fraction}")


# How a derived clip's frames come from its source's (and the number of its events). Both keep the set of frames,
# so a model that averages frames cannot tell a clip from its twin: only the order differs.
REORDERS = {
    "reverse": lambda frames, events: frames[::-1],
    "swap_halves": lambda frames, events: np.roll(frames, -(len(frames) // 2), axis=0),
    "reverse_events": lambda frames, events: np.concatenate(np.split(frames, events)[::-1]),
}
# Events that leave what a caption's subject names (size, colour, visibility) unchanged: after the cut in the
# middle of a swapped-order twin the clip starts over from the scene's first state, which then still fits.
CUT_SAFE_KINDS = ("move", "rotate")
SWAP_HOLD = 0.15  # idle time at each end of a swapped pair's clips; the gap between the events is twice it
# An events video: each event (weight 1) in its own equal part with this idle time on each side, so the event fills
# two thirds of its part, as in a one-event clip; its twin is the parts in reverse order.
EVENT_HOLD = 0.25


@dataclass
class Clip:
    """One planned media file. ``frames_of`` set: its frames are that clip's, reordered by ``REORDERS[reorder]``."""

    path: str  # relative to the corpus media folder
    scene: Scene
    num_frames: int
    caption: str | list[str] = ""
    group: str | None = None
    temporal: str | None = None
    frames_of: int | None = None
    reorder: str | None = None
    image: bool = False
    events: list[dict] = field(default_factory=list)  # events videos: {"caption", "start", "end"} in time order

    def record(self, media_key: str = "video") -> dict:
        rec = {media_key: self.path, "caption": self.caption}
        if self.events:
            rec["events"] = self.events
        if self.group:
            rec.update(hard_negative_group=self.group, temporal=self.temporal)
        return rec


# ---------------------------------------------------------------------------------------------- planning

def _draw(rng, domain: str, cfg: SynthConfig, used: set | None, num_events: int | None = None,
          allow_visibility: bool = True, ok=lambda s: True, **scene_kw) -> Scene:
    for _ in range(10_000):
        n = num_events or (2 if rng.random() < cfg.two_event_fraction else 1)
        scene = sample_scene(rng, n, allow_visibility=allow_visibility, **scene_kw)
        if in_test_domain(scene, cfg.test_fraction) != (domain == "test") or not ok(scene):
            continue
        if used is not None and scene.key() in used:
            continue
        return scene
    raise RuntimeError(f"could not draw a new {domain} scene; ask for fewer clips or change test_fraction")


def shape_twin(scene: Scene, domain: str, cfg: SynthConfig) -> Scene:
    """The same scene with another shape, drawn from the scene key so it is the same on every call; a shape that
    rotation leaves unchanged is never chosen for a rotating scene, and the twin stays in the scene's domain."""
    rotates = any(e.kind == "rotate" for e in scene.events)
    options = [s for s in SHAPES if s != scene.shape and not (rotates and s in ROUND_SHAPES)]
    start = int.from_bytes(hashlib.sha1(scene.key().encode()).digest()[:4], "big")
    for i in range(len(options)):
        twin = replace(scene, shape=options[(start + i) % len(options)])
        if in_test_domain(twin, cfg.test_fraction) == (domain == "test"):
            return twin
    return scene  # no shape keeps the domain: same key, so `fresh` rejects the pair


def plan_clips(rng: np.random.Generator, n: int, domain: str, cfg: SynthConfig, unique: bool,
               group_prefix: str, long_seconds: tuple[float, float] | None = None) -> list[Clip]:
    """``n`` clips of one split: single scenes plus hard-negative pairs (reversed, and for short clips
    swapped). ``unique`` keeps every scene key distinct (test splits: one right answer per caption).

    A reversed twin is its clip played backwards. A swapped twin ("B, then A" for "A, then B") is its clip with
    the two halves exchanged, a cut in the middle: the events are timed so the halves meet in the middle of the
    gap between them, and each half then holds one whole event with the same idle time on each side."""
    used: set[str] | None = set() if unique else None
    clips: list[Clip] = []
    groups = 0

    def add(scene: Scene, frames: int, group=None, temporal=None, reorder=None):
        if used is not None:
            used.add(scene.key())
        frames_of = len(clips) - 1 if reorder else None
        clips.append(Clip("", scene, frames, group=group, temporal=temporal, frames_of=frames_of, reorder=reorder))

    def long_kw():
        seconds = float(rng.uniform(*long_seconds))
        events = max(3, int(seconds / 7))
        weights = rng.uniform(2.0, 4.0, events)
        weights = [float(w) for w in weights * min(1.0, 0.75 * seconds / weights.sum())]
        idle = (seconds - sum(weights)) / (events + 1)
        return dict(num_events=events, weights=weights, hold=idle, gap=idle), int(round(seconds * cfg.fps))

    pairs = cfg.hard_negative_fraction + (0.0 if long_seconds else cfg.shape_twin_fraction)
    pair_p = pairs / (2 - pairs)  # a draw of a pair adds 2 clips
    temporal_p = pair_p * cfg.hard_negative_fraction / pairs if pairs else 0.0
    while len(clips) < n:
        r = rng.random()
        kw, frames = long_kw() if long_seconds else ({}, cfg.frames)
        fresh = (lambda *ss: len({s.key() for s in ss}) == len(ss) and not any(s.key() in used for s in ss)) \
            if used is not None else (lambda *ss: len({s.key() for s in ss}) == len(ss))
        if n - len(clips) >= 2 and temporal_p <= r < pair_p:
            scene = _draw(rng, domain, cfg, used, ok=lambda s: fresh(s, shape_twin(s, domain, cfg)))
            twin = shape_twin(scene, domain, cfg)
            group = f"{group_prefix}-hn{groups:05d}"
            add(scene, frames, group, "shape")
            add(twin, frames, group, "shape")
            groups += 1
        elif n - len(clips) >= 2 and r < temporal_p / (1 if long_seconds else 2):
            scene = _draw(rng, domain, cfg, used, ok=lambda s: fresh(s, s.reversed()), **kw)
            group = f"{group_prefix}-hn{groups:05d}"
            add(scene, frames, group, "reversed")
            add(scene.reversed(), frames, group, "reversed", reorder="reverse")
            groups += 1
        elif not long_seconds and n - len(clips) >= 2 and r < temporal_p:
            def swappable(s: Scene) -> bool:
                return all(e.kind in CUT_SAFE_KINDS for e in s.events) and fresh(s, s.swapped())
            scene = _draw(rng, domain, cfg, used, num_events=2, allow_visibility=False, ok=swappable,
                          hold=SWAP_HOLD, gap=2 * SWAP_HOLD)
            group = f"{group_prefix}-hn{groups:05d}"
            add(scene, frames, group, "swapped")
            add(scene.swapped(), frames, group, "swapped", reorder="swap_halves")
            groups += 1
        else:
            add(_draw(rng, domain, cfg, used, **kw), frames)
    return clips


def plan_events(rng: np.random.Generator, n: int, cfg: SynthConfig, group_prefix: str) -> list[Clip]:
    """``n`` test-domain videos of 2 or 3 events in order, in pairs: a video and its twin, which shows the same
    parts (one event each, idle time around it) in reverse order, so every two events of the video come in the
    other order in the twin. Only moves and rotations: they leave what the caption's subject names unchanged, so
    each event's caption holds wherever the event is put."""
    used: set[str] = set()
    clips: list[Clip] = []
    while len(clips) < n:
        count = int(rng.integers(2, 4))
        part = max(2, int(round(float(rng.uniform(*cfg.events_seconds)) * cfg.fps)))

        def usable(s: Scene) -> bool:
            twin = replace(s, events=s.events[::-1])
            return (len(s.events) == count and all(e.kind in CUT_SAFE_KINDS for e in s.events)
                    and s.key() != twin.key() and twin.key() not in used)

        scene = _draw(rng, "test", cfg, used, num_events=count, allow_visibility=False, ok=usable, hold=EVENT_HOLD,
                      gap=2 * EVENT_HOLD)
        group = f"{group_prefix}-hn{len(clips) // 2:05d}"
        for twin, reorder in ((scene, None), (replace(scene, events=scene.events[::-1]), "reverse_events")):
            used.add(twin.key())
            clips.append(Clip("", twin, count * part, group=group, temporal="swapped",
                              frames_of=len(clips) - 1 if reorder else None, reorder=reorder))
    return clips


def event_spans(num_frames: int, count: int, fps: float) -> list[tuple[float, float]]:
    """(start, end) in seconds of each event of an events video, to within a frame: the middle of its part, without
    the idle time."""
    part = num_frames / count / fps
    lead = EVENT_HOLD / (1 + 2 * EVENT_HOLD)
    return [(round((i + lead) * part, 3), round((i + 1 - lead) * part, 3)) for i in range(count)]


def plan_corpus(cfg: SynthConfig) -> dict[tuple[str, str], list[Clip]]:
    """(corpus, split) -> planned clips with paths and captions filled in."""
    plans: dict[tuple[str, str], list[Clip]] = {}

    def rng_for(i: int) -> np.random.Generator:
        return np.random.default_rng([cfg.seed, i])

    short = [("webvid", "train", cfg.webvid), ("msrvtt", "train", cfg.msrvtt_train), ("msrvtt", "test", cfg.msrvtt_test),
             ("msvd", "train", cfg.msvd_train), ("msvd", "test", cfg.msvd_test),
             ("lsmdc", "train", cfg.lsmdc_train), ("lsmdc", "test", cfg.lsmdc_test)]
    long = [("didemo", "train", cfg.didemo_train, cfg.didemo_seconds), ("didemo", "test", cfg.didemo_test, cfg.didemo_seconds),
            ("anet", "train", cfg.anet_train, cfg.anet_seconds), ("anet", "val", cfg.anet_val, cfg.anet_seconds)]
    for i, (corpus, split, n) in enumerate(short):
        if n:
            domain = "train" if split == "train" else "test"
            plans[(corpus, split)] = plan_clips(rng_for(i), n, domain, cfg, unique=domain == "test",
                                                group_prefix=f"{corpus}-{split}")
    for i, (corpus, split, n, seconds) in enumerate(long, start=len(short)):
        if n:
            domain = "train" if split == "train" else "test"
            plans[(corpus, split)] = plan_clips(rng_for(i), n, domain, cfg, unique=True,
                                                group_prefix=f"{corpus}-{split}", long_seconds=seconds)
    if cfg.cc3m:
        rng = rng_for(len(short) + len(long))
        plans[("cc3m", "train")] = [Clip("", _draw(rng, "train", cfg, None, num_events=0), 2, image=True)
                                    for _ in range(cfg.cc3m)]
    if cfg.events_test:  # a stream of its own after every other split's, which it leaves unchanged
        plans[("events", "test")] = plan_events(rng_for(len(short) + len(long) + 1), cfg.events_test, cfg,
                                                "events-test")
    _name_and_caption(plans, cfg)
    return plans


def _name_and_caption(plans: dict[tuple[str, str], list[Clip]], cfg: SynthConfig) -> None:
    msrvtt_next = 0
    for (corpus, split), clips in plans.items():
        rng = np.random.default_rng([cfg.seed, zlib.crc32(f"{corpus}/{split}".encode())])
        for i, clip in enumerate(clips):
            if corpus == "webvid":
                videoid, start = 1_000_000 + i, (i // 50) * 50
                clip.path = f"{start:06d}_{start + 49:06d}/{videoid}.mp4"
            elif corpus == "msrvtt":
                clip.path = f"video{msrvtt_next}.mp4"
                msrvtt_next += 1
            elif corpus == "cc3m":
                clip.path = f"{i:07d}.png"
            else:
                clip.path = f"{corpus}_{split}_{i:05d}.mp4"
            if corpus == "cc3m":
                clip.caption = captions.still_caption(clip.scene, rng)
            elif corpus == "msvd":
                clip.caption = captions.paraphrases(clip.scene, cfg.msvd_captions, rng)
            elif corpus == "lsmdc":
                clip.caption = captions.lsmdc_caption(clip.scene, rng)
            elif corpus in ("didemo", "anet"):
                clip.caption = captions.paragraph(clip.scene, rng)
            elif corpus == "events":
                clip.caption = [captions.caption(replace(clip.scene, events=(e,))) for e in clip.scene.events]
                spans = event_spans(clip.num_frames, len(clip.scene.events), cfg.fps)
                clip.events = [{"caption": c, "start": s, "end": e} for c, (s, e) in zip(clip.caption, spans)]
            else:
                clip.caption = captions.caption(clip.scene, rng)


# ---------------------------------------------------------------------------------------------- rendering

def _render_job(job: tuple) -> int:
    scene, num_frames, size, fps, crf, outputs, image = job
    frames = render_frames(scene, num_frames, size)
    for path, reorder in outputs:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        if image:
            write_image(path, frames[0])
        else:
            write_video(path, REORDERS[reorder](frames, len(scene.events)) if reorder else frames, fps=fps, crf=crf)
    return len(outputs)


def _jobs(plans: dict[tuple[str, str], list[Clip]], cfg: SynthConfig) -> list[tuple]:
    out = Path(cfg.out)
    jobs = []
    for (corpus, _), clips in plans.items():
        media = out / get_corpus(corpus).media_dir
        derived = {c.frames_of: c for c in clips if c.frames_of is not None}
        for j, clip in enumerate(clips):
            if clip.frames_of is not None:
                continue
            outputs = [(str(media / clip.path), None)]
            if j in derived:
                outputs.append((str(media / derived[j].path), derived[j].reorder))
            jobs.append((clip.scene, clip.num_frames, cfg.size, cfg.fps, cfg.crf, outputs, clip.image))
    # long videos first, so the pool is not left waiting on one at the end
    return sorted(jobs, key=lambda j: -j[1] * len(j[5]))


def _write_annotations(plans: dict[tuple[str, str], list[Clip]], cfg: SynthConfig) -> dict:
    out = Path(cfg.out)
    counts = {}
    for (corpus, split), clips in plans.items():
        spec = get_corpus(corpus)
        path = spec.anno_path(out, split)
        path.parent.mkdir(parents=True, exist_ok=True)
        records = [c.record("image" if spec.media == "image" else "video") for c in clips]
        path.write_text(json.dumps(records, indent=1))
        if corpus == "webvid":
            with spec.anno_path(out, "train_csv").open("w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["videoid", "name", "page_dir", "duration"])
                for c in clips:
                    page_dir, file = c.path.split("/")
                    seconds = int(round(c.num_frames / cfg.fps))
                    writer.writerow([file[:-4], c.caption, page_dir, f"PT00H00M{seconds:02d}S"])
        counts[f"{corpus}/{split}"] = {"files": len(clips), "hard_negative_groups": len({c.group for c in clips if c.group})}
    return counts


def generate(cfg: SynthConfig, progress: bool = True) -> dict:
    """Plan, render and write everything; returns the manifest (also written to OUT/manifest.json)."""
    from tqdm import tqdm

    start = time.perf_counter()
    plans = plan_corpus(cfg)
    jobs = _jobs(plans, cfg)
    total = sum(len(j[5]) for j in jobs)
    bar = tqdm(total=total, desc="rendering", unit="file", disable=not progress)
    if cfg.workers > 1:
        with multiprocessing.get_context("fork").Pool(cfg.workers) as pool:
            for done in pool.imap_unordered(_render_job, jobs, chunksize=4):
                bar.update(done)
    else:
        for job in jobs:
            bar.update(_render_job(job))
    bar.close()
    manifest = {"generator_version": GENERATOR_VERSION, "config": asdict(cfg), "splits": _write_annotations(plans, cfg),
                "seconds": round(time.perf_counter() - start, 2)}
    (Path(cfg.out) / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest
