"""Where the service keeps its own files, all inside the data dir (the media root is the user's: nothing is written
there). None of these folders may be ingested by path, whatever the media root; what in them belongs to no video is
removed at start (service/orphans.py)."""
from __future__ import annotations

from dataclasses import astuple, dataclass, fields
from pathlib import Path

from service.config import ServiceConfig


@dataclass(frozen=True)
class Layout:
    index: Path  # the library: SQLite and its FAISS checkpoints
    uploads: Path  # videos received as uploads: each belongs to the one video made from it, removed with it
    tmp: Path  # query uploads (search by file, embed), removed when their request ends
    thumbnails: Path  # <video id>/<ms>.jpg
    tokens: Path  # <video id>.npy: each window's vision tokens, for rerank (service/window_tokens.py)
    demo: Path  # the embedded default library's synthetic videos

    def folders(self) -> tuple[Path, ...]:
        return astuple(self)


def layout(config: ServiceConfig) -> Layout:
    return Layout(*(config.data_dir / f.name for f in fields(Layout)))


def jobs_file(config: ServiceConfig) -> Path:
    return config.data_dir / "jobs.sqlite"
