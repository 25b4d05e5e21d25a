"""`python -m service import PATH [service flags]`: precomputed segment vectors (the Parquet import format,
`encoders.vector_table`) into the configured library (--data-dir for FAISS, or --index-backend milvus ...).

Nothing half written: every file is read and checked (columns, one vector length equal to the library's, unit
norms, spans, the model fingerprint) before the first write; then videos are stored in batches, each one library
write (one SQLite transaction for FAISS). Each video carries a content hash of its path and vectors, so a run that
was stopped is resumed by running it again: videos already stored are skipped.

The model check (`Embedder.fingerprint`): the model the library records (service.state), else --model-path's, else
the one the files name (then recorded, so the service refuses to serve these vectors with another model); a file
that names another model is refused, and so is --model-path naming another model than the library's.
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from encoders.vector_table import BUILT_IN, parquet_files, read_table, vector_matrix
from encoders.video_text import load_embedder
from index import Library, NewVideo, check_fields
from service.config import ServiceConfig, config_from_args
from service.state import open_library, record_model, recorded_model

log = logging.getLogger(__name__)

NORM_TOLERANCE = 1e-3


@dataclass
class Checked:
    """The videos of the checked files, ready to store, and the fingerprint of the model that made them."""

    videos: list[NewVideo]
    dim: int
    fingerprint: str | None


def check_files(path: Path) -> Checked:
    """Read and check every file under `path`; ValueError naming the file and the problem."""
    files = parquet_files(path)
    if not files:
        raise ValueError(f"no .parquet files under {path}")
    videos, dims, fingerprints = [], set(), set()
    for file in files:
        table, fingerprint = read_table(file)
        vectors = vector_matrix(table, file)
        if vectors.shape[1] == 0:
            raise ValueError(f"{file}: empty vectors")
        dims.add(vectors.shape[1])
        if len(dims) > 1:
            raise ValueError(f"{file}: {vectors.shape[1]}-d vectors, other files hold {min(dims - {vectors.shape[1]})}-d")
        norms = np.linalg.norm(vectors, axis=1)
        if len(norms) and (not np.all(np.isfinite(norms)) or np.abs(norms - 1).max() > NORM_TOLERANCE):
            raise ValueError(f"{file}: vectors must be unit length (found norms up to {np.nanmax(norms):.4f}, row "
                             f"{int(np.argmax(np.abs(norms - 1)))})")
        if fingerprint:
            fingerprints.add(fingerprint)
        videos += _videos(file, table, vectors)
    if len(fingerprints) > 1:
        raise ValueError(f"the files under {path} were made by {len(fingerprints)} different models")
    return Checked(videos, dims.pop(), fingerprints.pop() if fingerprints else None)


def _videos(file: Path, table, vectors: np.ndarray) -> list[NewVideo]:
    columns = table.to_pydict()
    del columns["vector"]
    rows: dict[str, list[int]] = {}
    for i, path in enumerate(columns["path"]):
        if not isinstance(path, str) or not path:
            raise ValueError(f"{file}: row {i} has no path")
        rows.setdefault(path, []).append(i)
    out = []
    for path, idx in rows.items():
        idx.sort(key=lambda i: columns["start"][i])
        spans = [(columns["start"][i], columns["end"][i]) for i in idx]
        for start, end in spans:
            if start is None or end is None or not (np.isfinite(start) and np.isfinite(end) and 0 <= start < end):
                raise ValueError(f"{file}: {path} has a segment [{start}, {end}] that is not 0 <= start < end")
        first = idx[0]
        duration = columns.get("duration", [None] * (first + 1))[first]
        title = columns.get("title", [None] * (first + 1))[first]
        fields = {k: v[first] for k, v in columns.items() if k not in BUILT_IN and v[first] is not None}
        try:
            check_fields(fields)
        except ValueError as err:
            raise ValueError(f"{file}: {path}: {err}") from None
        x = vectors[idx]
        digest = hashlib.sha256(path.encode() + np.ascontiguousarray(x).tobytes()).hexdigest()
        out.append(NewVideo(path, float(duration) if duration is not None else float(max(e for _, e in spans)),
                            spans, x, fields, title or Path(path).stem, content_hash=f"import:{digest}"))
    return out


def library_fingerprint(library: Library, checked: Checked, given: str | None) -> str | None:
    """The fingerprint the library's vectors are made by after this import (`given`: --model-path's), or ValueError
    on any mismatch."""
    recorded = recorded_model(library)
    stored = recorded["fingerprint"] if recorded else None
    if stored and given and stored != given:
        raise ValueError(f"the library was built with model {stored[:12]}…, --model-path is model {given[:12]}…")
    expected = stored or given
    if checked.fingerprint and expected and checked.fingerprint != expected:
        raise ValueError(f"the vectors were made by model {checked.fingerprint[:12]}…, the library holds vectors of "
                         f"model {expected[:12]}…")
    return expected or checked.fingerprint


def import_vectors(library: Library, checked: Checked, model: str | None = None, given: str | None = None,
                   batch: int = 256) -> tuple[int, int]:
    """Store checked videos in batches; (videos stored, videos already there). ValueError before any write when
    the dimension or the model does not match the library. `model` and `given`: --model-path and its fingerprint."""
    if checked.dim != library.dim:
        raise ValueError(f"the vectors are {checked.dim}-d; the library holds {library.dim}-d vectors")
    fingerprint = library_fingerprint(library, checked, given)
    todo = [v for v in checked.videos if library.find_by_hash(v.content_hash) is None]
    if fingerprint and recorded_model(library) is None:
        record_model(library, fingerprint, model or "the model that wrote the imported files")
    for i in range(0, len(todo), batch):
        library.add_videos(todo[i:i + batch])
        log.info("imported %d of %d videos", min(i + batch, len(todo)), len(todo))
    return len(todo), len(checked.videos) - len(todo)


def run(path: Path, config: ServiceConfig) -> tuple[int, int]:
    """The import into the library `config` names (FAISS under its data dir, or Milvus)."""
    try:
        checked = check_files(path)
        given = load_embedder(config.model_path, num_frames=config.num_frames, frame_size=config.frame_size,
                              max_text_tokens=config.max_text_tokens).fingerprint if config.model_path else None
        library = open_library(config, checked.dim)
    except ValueError as err:
        raise ValueError(f"{err}; nothing was imported") from None
    try:
        return import_vectors(library, checked, config.model_path, given)
    except ValueError as err:  # the dimension and model checks come before the first write
        raise ValueError(f"{err}; nothing was imported") from None
    finally:
        library.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m service import", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", type=Path, help="a Parquet file or a folder of them")
    args, rest = parser.parse_known_args(argv)
    try:
        stored, skipped = run(args.path, config_from_args(rest))
    except (ValueError, FileNotFoundError, KeyError) as err:
        print(f"python -m service import: {err}", file=sys.stderr)
        return 2
    print(f"imported {stored} video(s) from {args.path}; {skipped} already in the library")
    return 0
