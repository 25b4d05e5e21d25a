"""Where a pretraining corpus is, in the forms people have it: found under a data root, or named explicitly.

Under a data root ROOT, for webvid (cc3m alike, with CC3M/ and images), the first that exists::

    ROOT/anno_pretrain/webvid_train.json  + videos under ROOT/WebVid/   the official JSON (VINDLU's layout)
    ROOT/anno_pretrain/webvid_train.csv   + videos under ROOT/WebVid/   WebVid's CSV in the same layout
    ROOT/WebVid/*.tar, or ROOT/*.tar                                   WebDataset shards (video2dataset, img2dataset)
    ROOT/<name>.csv + videos under ROOT/WebVid/, ROOT/videos/ or ROOT   WebVid's CSV as released, beside its videos

Explicitly: an annotation file (JSON or WebVid's CSV) with its media folder, or a shard spec (`retrieval.shards`).
A CSV's video is <folder>/<page_dir>/<videoid>.mp4 or <folder>/<videoid>.mp4, whichever the files are.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from retrieval.corpora import CorpusNotFound, CorpusSpec, get_corpus, official_data
from retrieval.shards import check_first_sample, shard_list


@dataclass(frozen=True)
class PretrainSource:
    """One corpus's training data: an annotation file and its media folder, or shards."""

    corpus: str
    annotation: Path | None = None
    media_root: Path | None = None
    shards: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.shards:
            return f"{self.corpus}: {len(self.shards)} WebDataset shard(s), {self.shards[0]} ..."
        return f"{self.corpus}: {self.annotation}, {get_corpus(self.corpus).media}s under {self.media_root}"


def formats(spec: CorpusSpec) -> str:
    """The forms `find_source` reads, for messages."""
    media = "videos" if spec.media == "video" else "images"
    csv = (f"; WebVid's CSV as released (videoid, name, page_dir, ...) in the data root, with the {media} in "
           f"{spec.media_dir}/ or videos/ beside it" if spec.name == "webvid" else "")
    return (f"readable forms: {spec.anno_dir}/{spec.splits['train']} (a JSON array of {{\"{spec.media}\": file, "
            f"\"caption\": text}}) with the {media} in {spec.media_dir}/{csv}; WebDataset shards (*.tar of "
            f"{{key}}.{'mp4' if spec.media == 'video' else 'jpg'} + {{key}}.txt) in {spec.media_dir}/ or the data root, "
            "or named by --shards (a brace pattern, a folder, or a .txt list of paths or URLs)")


def media_folder(spec: CorpusSpec, root: Path) -> Path:
    """Where the media of an annotation in `root` are: ROOT/<media_dir>, else ROOT/videos (images), else ROOT."""
    for folder in (root / spec.media_dir, root / f"{spec.media}s"):
        if folder.is_dir():
            return folder
    return root


def find_source(corpus: str, root: str | Path | None, split: str = "train", annotation: str = "",
                media_dir: str = "", shards: str = "", alone: bool = True) -> PretrainSource:
    """The data of `corpus` (see the module doc). `alone`: the corpus is the only one trained on, so the data root
    itself may hold its shards or CSV (in the webvid + cc3m mix each has its own media folder). CorpusNotFound
    lists every place looked at."""
    spec = get_corpus(corpus)
    media = Path(media_dir) if media_dir else None
    if shards:
        return _shards(corpus, shard_list(shards), spec)
    if annotation:
        anno = Path(annotation)
        if not anno.is_file():
            raise CorpusNotFound(f"no {corpus} annotation file at {anno}\n  {formats(spec)}")
        return PretrainSource(corpus, anno, media or media_folder(spec, Path(root) if root else anno.parent))
    if root is None:
        raise CorpusNotFound(f"no data root given for {corpus}\n  {formats(spec)}")
    root = Path(root)
    if not root.is_dir():
        raise CorpusNotFound(f"no {corpus} data: the folder {str(root)!r} does not exist\n  {formats(spec)}\n  "
                             f"{official_data(spec)}")
    looked = []
    standard = [split] + (["train_csv"] if split == "train" and "train_csv" in spec.splits else [])
    for name in standard:
        anno = spec.anno_path(root, name)
        looked.append(str(anno))
        if anno.is_file():
            return PretrainSource(corpus, anno, media or spec.media_root(root))
    for folder in [root / spec.media_dir] + ([root] if alone else []):
        looked.append(f"{folder}/*.tar")
        tars = sorted(str(p) for p in folder.glob("*.tar"))
        if tars:
            return _shards(corpus, tars, spec)
    if corpus == "webvid" and alone:
        looked.append(f"{root}/*.csv")
        csvs = sorted(root.glob("*.csv"))
        if len(csvs) > 1:
            raise CorpusNotFound(f"{len(csvs)} CSV files in {root} ({', '.join(p.name for p in csvs[:4])}); name "
                                 "the one to train on with --annotation FILE")
        if csvs:
            return PretrainSource(corpus, csvs[0], media or media_folder(spec, root))
    raise CorpusNotFound(f"no {corpus} data under {root}; looked for {', '.join(looked)}\n  {formats(spec)}\n  "
                         f"{official_data(spec)}")


def _shards(corpus: str, shards: list[str], spec: CorpusSpec) -> PretrainSource:
    check_first_sample(shards, spec.media)
    return PretrainSource(corpus, shards=tuple(shards))
