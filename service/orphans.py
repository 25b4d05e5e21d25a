"""Files the service keeps for its videos that belong to no video any more: what a crash, a kill during ingestion
or a failed request left behind (uploads whose job never finished, thumbnails and window tokens of deleted or never
stored videos, query uploads). Removed at start, before any request or job runs, and counted in /healthz."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

from index import Library
from service.config import ServiceConfig
from service.layout import layout

log = logging.getLogger(__name__)

PAGE = 1000


def _library_files(library: Library) -> tuple[set[str], set[str]]:
    """(file names, ids as text) of every video. Uploads are told by name: each has a fresh random one, and a
    name that merely matches keeps a file (the safe way to be wrong)."""
    names, ids, offset = set(), set(), 0
    while True:
        page, total = library.list_videos(None, offset, PAGE)
        names.update(Path(r.path).name for r in page)
        ids.update(str(r.id) for r in page)
        offset += len(page)
        if not page or offset >= total:
            return names, ids


def sweep(config: ServiceConfig, library: Library) -> dict[str, int]:
    names, ids = _library_files(library)
    removed = {"uploads": 0, "thumbnails": 0, "tokens": 0, "temporary": 0}
    for file in _entries(layout(config).uploads):
        if file.name not in names:
            _remove(file)
            removed["uploads"] += 1
    for folder in _entries(layout(config).thumbnails):
        if folder.name == ".pending":
            removed["thumbnails"] += sum(_remove(f) for f in _entries(folder))
        elif folder.name not in ids:
            removed["thumbnails"] += _remove(folder)
    for file in _entries(layout(config).tokens):
        if file.stem not in ids or file.suffix != ".npy":  # a partial write is <id>.tmp.npy
            removed["tokens"] += _remove(file)
    removed["temporary"] += sum(_remove(f) for f in _entries(layout(config).tmp))
    if any(removed.values()):
        log.info("removed files that belonged to no video: %s", removed)
    return removed


def _entries(folder: Path) -> list[Path]:
    return sorted(folder.iterdir()) if folder.is_dir() else []


def _remove(path: Path) -> int:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
    return 1
