"""The import format of precomputed vectors: Parquet files with one row per video segment.

Columns: `path` (string), `start`, `end` (seconds, float), `vector` (a list of float32 of one fixed length, unit
norm); optional `duration` (seconds) and `title`; every further column is a user field of the video (the value of its
first row). A file may carry the fingerprint of the model that made its vectors in its schema metadata
(`model_fingerprint`: the `Embedder.fingerprint` of the model that made them). Written by `python -m encoders.extract --format
parquet` and `python -m service bulk-ingest`, read by `python -m service import`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

REQUIRED = ("path", "start", "end", "vector")
BUILT_IN = REQUIRED + ("duration", "title")
FINGERPRINT_KEY = b"model_fingerprint"


def _pa():
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pa, pq


def video_table(path: str, spans: list[tuple[float, float]], vectors: np.ndarray, duration: float | None = None,
                title: str | None = None, fields: dict | None = None):
    """One video's rows (a pyarrow Table; vectors as a fixed-size list column, without a copy)."""
    pa, _ = _pa()
    vectors = np.ascontiguousarray(vectors, np.float32)
    n, dim = vectors.shape
    columns = {"path": pa.array([path] * n, pa.string()),
               "start": pa.array([float(s) for s, _ in spans], pa.float64()),
               "end": pa.array([float(e) for _, e in spans], pa.float64()),
               "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim)}
    if duration is not None:
        columns["duration"] = pa.array([float(duration)] * n, pa.float64())
    if title is not None:
        columns["title"] = pa.array([title] * n, pa.string())
    for name, value in (fields or {}).items():
        columns[name] = pa.array([value] * n)
    return pa.table(columns)


def write_tables(out: Path, tables: list, model_fingerprint: str | None = None) -> None:
    """Rows of several videos in one file, written to a temporary name and renamed (a reader never sees half)."""
    pa, pq = _pa()
    table = pa.concat_tables(tables, promote_options="permissive")
    if model_fingerprint:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                               FINGERPRINT_KEY: model_fingerprint.encode()})
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    pq.write_table(table, tmp)
    tmp.replace(out)


def parquet_files(path: Path) -> list[Path]:
    """A Parquet file, or the *.parquet files of a folder (recursively, in name order)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is neither a Parquet file nor a folder")
    return sorted(p for p in path.rglob("*.parquet") if p.is_file())


def read_table(path: Path):
    """(table, model fingerprint or None) of one file; ValueError naming the file when it cannot be read or lacks
    a required column."""
    pa, pq = _pa()
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as err:
        raise ValueError(f"{path}: not a readable Parquet file ({err})") from None
    missing = [c for c in REQUIRED if c not in table.column_names]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; the import format needs "
                         f"{', '.join(REQUIRED)}")
    fingerprint = (table.schema.metadata or {}).get(FINGERPRINT_KEY)
    return table, fingerprint.decode() if fingerprint else None


def vector_matrix(table, path: Path) -> np.ndarray:
    """The `vector` column as an (n, dim) float32 array; ValueError when rows differ in length."""
    pa, _ = _pa()
    column = table.column("vector").combine_chunks()
    if pa.types.is_fixed_size_list(column.type):
        return column.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(column), -1)
    lengths = set(column.value_lengths().to_pylist()) if len(column) else {0}
    if len(lengths) != 1 or column.null_count:
        raise ValueError(f"{path}: vectors of different lengths ({sorted(x for x in lengths if x is not None)})")
    return column.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(column), -1)
