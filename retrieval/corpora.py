"""The standard corpora: where their annotations and videos live, how their captions are read, and loaders
that turn an annotation file into training pairs or an evaluation benchmark.

Layout under a data root (what ``python -m retrieval.synth`` writes, and how the official annotation
files are usually arranged)::

    ROOT/anno_pretrain/webvid_train.json  (or WebVid's CSV)   ROOT/WebVid/<page_dir>/<videoid>.mp4
    ROOT/anno_downstream/msrvtt_ret_test1k.json ...           ROOT/MSRVTT_Videos/video7010.mp4 ...

Text handling per corpus: ``single`` (one str caption per record; several records may share a video),
``multi`` (a caption list = several ground-truth texts of one video, MSVD) and ``paragraph`` (a caption
list of sentences joined with spaces, DiDeMo/ActivityNet). Captions pass through the official
:func:`encoders.video_text.pre_text`. Records may carry ``"hard_negative_group"`` and ``"temporal"`` (synthetic
corpora: clips that differ only in time order, or for training only in the shape, ``"shape"``); benchmarks
expose them for temporal accuracy, and training batches keep a group together. The synthetic ``events`` split's
records also carry ``"events"``: each event's caption with its start and end in seconds (``read_events``).

    pairs = load_pairs("msrvtt", root, split="train")       # Pairs: media paths, captions, sample ids
    bench = load_benchmark("msrvtt", root)                   # Benchmark: texts, videos, txt2vid, vid2txt
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from encoders.video_text import pre_text

ANNO_PRETRAIN = "anno_pretrain"
ANNO_DOWNSTREAM = "anno_downstream"


class AnnotationError(ValueError):
    """A malformed annotation file; the message names the file, the record index and the field."""


class CorpusNotFound(FileNotFoundError):
    """A corpus's annotation file or media is not where it was looked for; the message says where it looked, what
    belongs there and where the official data is published, so a command line can print it as it is."""


# Where the official annotation files (VINDLU's JSON, as VideoMamba uses them) are described.
ANNOTATIONS_URL = "https://github.com/OpenGVLab/VideoMamba/blob/main/videomamba/video_mm/DATASET.md"


@dataclass(frozen=True)
class CorpusSpec:
    name: str
    kind: str  # "pretrain" (a training source) or "benchmark" (retrieval evaluation)
    media: str  # "video" or "image"
    text: str  # "single", "multi" or "paragraph"
    max_txt_len: int  # tokenizer max_length used by the official configs
    splits: dict[str, str]  # split -> standard annotation file name
    media_dir: str  # standard folder of the videos/images under the data root
    source: str = ""  # where the official videos or images are published
    eval_split: str | None = None
    trimmed30: bool = False  # decode only the first 30 s (DiDeMo)

    @property
    def anno_dir(self) -> str:
        return ANNO_PRETRAIN if self.kind == "pretrain" else ANNO_DOWNSTREAM

    def anno_path(self, root: str | os.PathLike, split: str) -> Path:
        if split not in self.splits:
            raise KeyError(f"corpus {self.name!r} has no split {split!r}; splits: {', '.join(self.splits)}")
        return Path(root) / self.anno_dir / self.splits[split]

    def media_root(self, root: str | os.PathLike) -> Path:
        return Path(root) / self.media_dir


CORPORA: dict[str, CorpusSpec] = {}


def register_corpus(spec: CorpusSpec) -> CorpusSpec:
    if spec.name in CORPORA:
        raise ValueError(f"corpus {spec.name!r} is registered twice")
    CORPORA[spec.name] = spec
    return spec


def get_corpus(name: str) -> CorpusSpec:
    if name not in CORPORA:
        raise KeyError(f"unknown corpus {name!r}; registered: {', '.join(sorted(CORPORA))}")
    return CORPORA[name]


def list_corpora(kind: str | None = None) -> list[str]:
    return sorted(n for n, s in CORPORA.items() if kind is None or s.kind == kind)


register_corpus(CorpusSpec("webvid", "pretrain", "video", "single", 32,
                           {"train": "webvid_train.json", "train_csv": "webvid_train.csv"}, "WebVid",
                           "https://github.com/m-bain/webvid (video2dataset downloads it as shards)"))
register_corpus(CorpusSpec("cc3m", "pretrain", "image", "single", 32, {"train": "cc3m_train.json"}, "CC3M",
                           "https://github.com/google-research-datasets/conceptual-captions (img2dataset "
                           "downloads it as shards)"))
register_corpus(CorpusSpec("msrvtt", "benchmark", "video", "single", 32,
                           {"train": "msrvtt_ret_train9k.json", "test": "msrvtt_ret_test1k.json"},
                           "MSRVTT_Videos", "https://www.robots.ox.ac.uk/~maxbain/frozen-in-time/data/MSRVTT.zip",
                           eval_split="test"))
register_corpus(CorpusSpec("didemo", "benchmark", "video", "paragraph", 64,
                           {"train": "didemo_ret_train.json", "val": "didemo_ret_val.json",
                            "test": "didemo_ret_test.json"}, "DiDeMo", "https://github.com/LisaAnne/LocalizingMoments",
                           eval_split="test", trimmed30=True))
register_corpus(CorpusSpec("anet", "benchmark", "video", "paragraph", 150,
                           {"train": "anet_ret_train.json", "val": "anet_ret_val.json"}, "ActivityNet",
                           "http://activity-net.org/download.html", eval_split="val"))
register_corpus(CorpusSpec("lsmdc", "benchmark", "video", "single", 96,
                           {"train": "lsmdc_ret_train.json", "test": "lsmdc_ret_test_1000.json"}, "LSMDC",
                           "https://sites.google.com/site/describingmovies", eval_split="test"))
register_corpus(CorpusSpec("events", "benchmark", "video", "paragraph", 64, {"test": "events_ret_test.json"},
                           "Events", "nowhere: synthetic only (python -m retrieval.synth --events-test N)",
                           eval_split="test"))
register_corpus(CorpusSpec("msvd", "benchmark", "video", "multi", 64,
                           {"train": "msvd_ret_train.json", "test": "msvd_ret_test.json"}, "MSVD_Videos",
                           "https://www.cs.utexas.edu/users/ml/clamp/videoDescription/", eval_split="test"))

# ---------------------------------------------------------------------------------------------- reading

HARD_NEGATIVE_KINDS = ("reversed", "swapped", "shape")  # time order (the first two) or appearance
WEBVID_CSV_COLUMNS = ("videoid", "name")  # as released, with page_dir (the download script's sub-folder)
MEDIA_PROBE = 50  # annotation records whose files are looked for before a corpus's media is called missing


def describe_layout(spec: CorpusSpec) -> str:
    """What a data root holds for `spec`, in one sentence (for messages about missing or misplaced data)."""
    key = "image" if spec.media == "image" else "video"
    caption = {"single": '"a sentence"', "multi": '["a sentence", "another", ...]',
               "paragraph": '["first sentence", "second sentence", ...]'}[spec.text]
    return (f"a data root holds {spec.anno_dir}/<split file> (a JSON array of {{\"{key}\": \"<file under "
            f"{spec.media_dir}/>\", \"caption\": {caption}}}; split files: {', '.join(spec.splits.values())}) and "
            f"the {spec.media}s under {spec.media_dir}/")


def official_data(spec: CorpusSpec) -> str:
    return f"official annotations: {ANNOTATIONS_URL}; {spec.media}s: {spec.source}"


def read_annotation(path: str | os.PathLike, spec: CorpusSpec) -> list[dict]:
    """Validated records ``{"media": str, "caption": str | list[str], "group": str|None, "temporal": str|None}``
    from an official JSON array (``video``/``image`` + ``caption``) or, for webvid, WebVid's CSV."""
    path = Path(path)
    if not path.is_file():
        raise CorpusNotFound(f"no {spec.name} annotation file at {path}\n  {describe_layout(spec)}\n  "
                             f"{official_data(spec)}")
    if path.suffix == ".csv":
        return _read_webvid_csv(path)
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AnnotationError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, list):
        raise AnnotationError(f"{path}: expected a JSON array of records, got {type(data).__name__}")
    return [_check_record(path, i, rec, spec) for i, rec in enumerate(data)]


def _check_record(path: Path, i: int, rec, spec: CorpusSpec) -> dict:
    where = f"{path}: record {i}"
    if not isinstance(rec, dict):
        raise AnnotationError(f"{where}: expected an object, got {type(rec).__name__}")
    key = "image" if spec.media == "image" and "image" in rec else "video"
    if key not in rec:
        raise AnnotationError(f"{where}: missing field {('image' if spec.media == 'image' else 'video')!r}")
    media = rec[key]
    if isinstance(media, list):
        raise AnnotationError(f"{where}: field {key!r} is a list (has_multi_vision_gt); not supported")
    if not isinstance(media, str) or not media:
        raise AnnotationError(f"{where}: field {key!r} must be a non-empty string, got {media!r}")
    if "caption" not in rec:
        raise AnnotationError(f"{where}: missing field 'caption'")
    cap = rec["caption"]
    is_list = isinstance(cap, list) and len(cap) > 0 and all(isinstance(c, str) for c in cap)
    if spec.text == "paragraph" and not is_list:
        raise AnnotationError(f"{where}: field 'caption' must be a non-empty list of sentences for the "
                              f"paragraph corpus {spec.name!r}, got {type(cap).__name__}")
    if not (isinstance(cap, str) and cap.strip()) and not is_list:
        raise AnnotationError(f"{where}: field 'caption' must be a non-empty string or list of strings, got {cap!r}")
    group, temporal = rec.get("hard_negative_group"), rec.get("temporal")
    if group is not None and not isinstance(group, str):
        raise AnnotationError(f"{where}: field 'hard_negative_group' must be a string, got {group!r}")
    if group is not None and temporal not in HARD_NEGATIVE_KINDS:
        raise AnnotationError(f"{where}: field 'temporal' must be one of {HARD_NEGATIVE_KINDS}, got {temporal!r}")
    return {"media": media, "caption": cap, "group": group, "temporal": temporal if group else None}


def _read_webvid_csv(path: Path) -> list[dict]:
    """WebVid's released CSV (videoid, name = the caption, page_dir, duration, contentUrl): the video of a row is
    <page_dir>/<videoid>.mp4, or <videoid>.mp4 without a page_dir column (see `_flat_when_found_so`)."""
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in WEBVID_CSV_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise AnnotationError(f"{path}: missing column(s) {', '.join(missing)}; WebVid's CSV has "
                                      f"{', '.join(WEBVID_CSV_COLUMNS)} (and page_dir, duration, contentUrl)")
            nested = "page_dir" in reader.fieldnames
            out = []
            for i, row in enumerate(reader):
                for col in WEBVID_CSV_COLUMNS + (("page_dir",) if nested else ()):
                    if not (row.get(col) or "").strip():
                        raise AnnotationError(f"{path}: record {i} (line {i + 2}): empty field {col!r}")
                name = f"{row['videoid']}.mp4"
                out.append({"media": f"{row['page_dir']}/{name}" if nested else name, "caption": row["name"],
                            "group": None, "temporal": None})
    except (UnicodeDecodeError, csv.Error) as exc:
        raise AnnotationError(f"{path}: not a readable CSV ({exc})") from None
    return out


def _flat_when_found_so(records: list[dict], media_root: Path) -> list[dict]:
    """WebVid's download script writes <page_dir>/<videoid>.mp4, other tools one flat folder of <videoid>.mp4: the
    records name the flat files when the first ones are found only that way."""
    sample = records[:MEDIA_PROBE]
    nested = sum((media_root / r["media"]).is_file() for r in sample)
    flat = sum((media_root / Path(r["media"]).name).is_file() for r in sample)
    return [{**r, "media": Path(r["media"]).name} for r in records] if flat > nested else records


def _records(anno: Path, spec: CorpusSpec, media_root: Path, require_media: bool) -> list[dict]:
    records = read_annotation(anno, spec)
    if anno.suffix == ".csv":
        records = _flat_when_found_so(records, media_root)
    if require_media:
        check_media(spec, anno, media_root, [r["media"] for r in records[:MEDIA_PROBE]])
    return records


def check_media(spec: CorpusSpec, anno: Path, media_root: Path, names: list[str]) -> None:
    """CorpusNotFound when none of `names` (the first files an annotation names) is under `media_root`: a wrong
    folder or a corpus whose videos were never downloaded, said once instead of skipping every file."""
    if not names or any((media_root / name).is_file() for name in names):
        return
    where = (f"the folder {media_root} does not exist" if not media_root.is_dir() else
             f"none of the first {len(names)} is under {media_root} (e.g. {media_root / names[0]})")
    raise CorpusNotFound(f"{anno} names {spec.media}s that are not there: {where}\n  {describe_layout(spec)}\n  "
                         f"{official_data(spec)}")


def _resolve(name: str, root, split: str | None, anno, media_root) -> tuple[CorpusSpec, str, Path, Path]:
    spec = get_corpus(name)
    split = split or spec.eval_split or "train"
    if anno is None:
        if root is None:
            raise ValueError(f"give a data root or an annotation file for corpus {name!r}")
        anno = spec.anno_path(root, split)
    if media_root is None:
        if root is None:
            raise ValueError(f"give a data root or media_root for corpus {name!r}")
        media_root = spec.media_root(root)
    return spec, split, Path(anno), Path(media_root)


def _texts_of(caption: str | list[str], spec: CorpusSpec) -> list[str]:
    if isinstance(caption, str):
        return [pre_text(caption)]
    if spec.text == "paragraph":
        return [pre_text(" ".join(caption))]
    return [pre_text(c) for c in caption]


# ---------------------------------------------------------------------------------------------- views

@dataclass(frozen=True)
class Pair:
    media: str  # absolute path of the video or image
    caption: str  # after pre_text
    sample_id: int  # same id = same video: the positives of multi-positive VTC
    group: str | None = None
    temporal: str | None = None


@dataclass
class Pairs:
    """Training view: one (media, caption) pair per text; several pairs may share a sample_id."""

    corpus: str
    split: str
    media: str  # "video" or "image"
    items: list[Pair]
    max_txt_len: int
    trimmed30: bool = False

    @property
    def num_samples(self) -> int:
        return len({p.sample_id for p in self.items})

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class Benchmark:
    """Evaluation view: ``texts[i]`` matches video ``txt2vid[i]``; ``vid2txt[v]`` lists all texts of video v.
    ``groups`` maps a hard-negative group id to its video indices, ``temporal`` to its kind."""

    name: str
    split: str
    videos: list[str]
    texts: list[str]
    txt2vid: list[int]
    vid2txt: list[list[int]]
    max_txt_len: int
    trimmed30: bool = False
    groups: dict[str, list[int]] = field(default_factory=dict)
    temporal: dict[str, str] = field(default_factory=dict)


def load_pairs(name: str, root: str | os.PathLike | None = None, split: str = "train",
               anno: str | os.PathLike | None = None, media_root: str | os.PathLike | None = None,
               require_media: bool = False) -> Pairs:
    """Training pairs of a corpus split; records of the same video (msrvtt train) share a sample_id, a
    caption list gives one pair per caption (a paragraph: one joined pair). require_media: raise CorpusNotFound
    when none of the first files is there (see `check_media`)."""
    spec, split, anno, media_root = _resolve(name, root, split, anno, media_root)
    ids: dict[str, int] = {}
    items = []
    for rec in _records(anno, spec, media_root, require_media):
        sid = ids.setdefault(rec["media"], len(ids))
        for text in _texts_of(rec["caption"], spec):
            items.append(Pair(str(media_root / rec["media"]), text, sid, rec["group"], rec["temporal"]))
    return Pairs(spec.name, split, spec.media, items, spec.max_txt_len, spec.trimmed30)


@dataclass(frozen=True)
class EventVideo:
    """A video of the events split: its events' captions in time order, each with its (start, end) in seconds."""

    path: str
    captions: list[str]
    spans: list[tuple[float, float]]
    group: str | None = None


def read_events(root: str | os.PathLike, split: str = "test") -> list[EventVideo]:
    """The events split of a data root with the timing of every event (what "A then B" is measured against)."""
    spec = get_corpus("events")
    anno = spec.anno_path(root, split)
    out = []
    for i, (rec, raw) in enumerate(zip(read_annotation(anno, spec), json.loads(anno.read_text()))):
        events = raw.get("events")
        if not (isinstance(events, list) and events and
                all(isinstance(e, dict) and {"caption", "start", "end"} <= e.keys() for e in events)):
            raise AnnotationError(f"{anno}: record {i}: field 'events' must be a non-empty list of "
                                  "{caption, start, end}")
        out.append(EventVideo(str(spec.media_root(root) / rec["media"]), [e["caption"] for e in events],
                              [(float(e["start"]), float(e["end"])) for e in events], rec["group"]))
    return out


def load_benchmark(name: str, root: str | os.PathLike | None = None, split: str | None = None,
                   anno: str | os.PathLike | None = None, video_root: str | os.PathLike | None = None,
                   require_media: bool = False) -> Benchmark:
    """An evaluation split (default: the one the official zero-shot config evaluates)."""
    spec, split, anno, video_root = _resolve(name, root, split, anno, video_root)
    bench = Benchmark(spec.name, split, [], [], [], [], spec.max_txt_len, spec.trimmed30)
    index: dict[str, int] = {}
    for rec in _records(anno, spec, video_root, require_media):
        if rec["media"] not in index:
            index[rec["media"]] = len(bench.videos)
            bench.videos.append(str(video_root / rec["media"]))
            bench.vid2txt.append([])
        v = index[rec["media"]]
        for text in _texts_of(rec["caption"], spec):
            bench.vid2txt[v].append(len(bench.texts))
            bench.texts.append(text)
            bench.txt2vid.append(v)
        if rec["group"]:
            members = bench.groups.setdefault(rec["group"], [])
            if v not in members:
                members.append(v)
            bench.temporal[rec["group"]] = rec["temporal"]
    return bench
