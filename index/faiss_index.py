"""FAISS vector index with stable 64-bit ids: exact inner product by default, IVF-Flat (exact scores of the probed
lists), IVF-PQ or HNSW for large libraries.

The index is a cache of the vectors held in SQLite (see `index.store`): it can be dropped and rebuilt at any time,
so persistence here only has to be atomic and self-checking, not a log.
"""
from __future__ import annotations

import json
import logging
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from index.atomic import atomic_write_bytes

log = logging.getLogger(__name__)

KINDS = ("auto", "flat", "ivfflat", "ivfpq", "hnsw")
IVF_KINDS = ("ivfflat", "ivfpq")
_MAGIC = b"VMRIDX1\n"
# Exact search of at least this many queries at once goes through BLAS (one matrix product) instead of FAISS's
# per-query scan. faiss-cpu 1.15 ships 128,000 (never, for a micro-batch): 32 queries over 100k x 512 took 1.16 s
# by the scan and 0.11 s by BLAS on one core of the 2-core CI machine. 20 is the threshold FAISS long shipped.
BLAS_THRESHOLD = 20
_SHIPPED_BLAS_THRESHOLD = faiss.cvar.distance_compute_blas_threshold
_search_threads = 0  # set_search_threads


def set_search_threads(threads: int) -> None:
    """OpenMP threads of every later search in this process, with BLAS for batched exact search; 0: FAISS as
    shipped (a thread per core, its own BLAS threshold). OpenMP keeps a thread count per calling thread (one set in
    the main thread does not reach a worker thread's search), so it is applied in the searching thread itself."""
    global _search_threads
    if threads < 0:
        raise ValueError(f"search threads must be >= 0, got {threads}")
    _search_threads = threads
    faiss.cvar.distance_compute_blas_threshold = BLAS_THRESHOLD if threads else _SHIPPED_BLAS_THRESHOLD


def search_threads() -> int:
    """The OpenMP threads a search started from the calling thread runs on."""
    if _search_threads:
        faiss.omp_set_num_threads(_search_threads)
    return faiss.omp_get_max_threads()


@dataclass
class IndexConfig:
    """Which FAISS structure to use. `auto` is exact (flat) below `approximate_above` vectors, IVF-Flat above: on
    the 1M-segment load benchmark IVF-PQ (64-byte codes) kept only 0.30 of the exact top-10 videos, while IVF-Flat
    scans the same lists with the full vectors (the memory of flat) and returns exact inner products for what it
    finds, so only lists that are not probed can cost recall (docs/benchmarks.md, "1M segments")."""

    kind: str = "auto"
    approximate_above: int = 200_000
    nlist: int = 0  # 0: sqrt(n), at least 16 (see ivf_nlist)
    pq_m: int = 0  # 0: dim/8 sub-quantizers (must divide dim)
    pq_nbits: int = 8
    nprobe: int = 0  # 0: 16 for IVF-Flat, 32 for IVF-PQ (see ivf_nprobe)
    hnsw_m: int = 32
    ef_construction: int = 40
    ef_search: int = 64
    use_gpu: bool = True  # only taken when faiss was built with GPU support and a GPU is visible

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"IndexConfig.kind must be one of {KINDS}, got {self.kind!r}")

    def resolve_kind(self, n: int) -> str:
        if self.kind != "auto":
            return self.kind
        return "ivfflat" if n >= self.approximate_above else "flat"

    def ivf_nlist(self, n: int) -> int:
        """sqrt(n) lists rather than FAISS's 4-16·sqrt(n): k-means over 4,000 lists of 1M x 512 takes many minutes
        on a 2-core machine, and at a fixed nprobe fewer, larger lists keep more of the true neighbours."""
        return self.nlist or max(16, int(math.sqrt(max(n, 1))))

    def ivf_nprobe(self, kind: str) -> int:
        """Lists scanned per query. IVF-Flat at 16 of 1,024 lists kept 0.998 of the exact top-10 videos of the 1M
        load benchmark at 48 ms per batch of 16 queries (32: 1.000 at 109 ms); IVF-PQ keeps the 32 it had."""
        return self.nprobe or (16 if kind == "ivfflat" else 32)

    def ivf_pq_m(self, dim: int) -> int:
        m = self.pq_m or max(1, dim // 8)
        if dim % m:
            raise ValueError(f"IndexConfig.pq_m={m} must divide the vector dimension {dim}")
        return m

    def min_train_size(self, n: int, kind: str) -> int:
        """IVF needs enough points for its coarse k-means (39 per list, FAISS's own floor), IVF-PQ also for its
        2^nbits PQ centroids."""
        return max(39 * self.ivf_nlist(n), 1 << self.pq_nbits if kind == "ivfpq" else 0)


def gpu_available() -> bool:
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


class VectorIndex:
    """Inner-product search over L2-normalized float32 vectors keyed by int64 ids. Flat and HNSW number their rows,
    so an IndexIDMap2 maps rows to ids; IVF stores the ids in its lists itself and is not wrapped: IndexIDMap2's
    removal assumes the rows after a removed one shift down, which IVF lists do not do, so a wrapped IVF index
    answered with the wrong ids after any delete. Flat, IVF-Flat and HNSW keep the full vectors, so their scores are
    exact inner products; IVF-PQ's are estimates from its codes.

    Add, upsert and delete never rebuild. HNSW cannot delete in place, so its deletions are tombstones filtered
    out of results (and persisted with the index) until the next `VectorIndex.build`.
    """

    def __init__(self, dim: int, kind: str, index: faiss.Index, config: IndexConfig, tombstones=()):
        self.dim, self.kind, self.config = dim, kind, config
        self._index = index
        self._tombstones: set[int] = set(int(i) for i in tombstones)
        self._gpu_replica = None
        self._apply_search_params()

    # --- construction ---
    @classmethod
    def build(cls, dim: int, config: IndexConfig | None = None, ids=None, vectors=None) -> "VectorIndex":
        """A fresh index over `vectors` with `ids`; IVF falls back to flat when there are too few to train."""
        config = config or IndexConfig()
        ids = np.zeros(0, np.int64) if ids is None else np.ascontiguousarray(ids, dtype=np.int64)
        vectors = np.zeros((0, dim), np.float32) if vectors is None else _as_matrix(vectors, dim)
        n = len(ids)
        kind = config.resolve_kind(n)
        if kind in IVF_KINDS and n < config.min_train_size(n, kind):
            log.info("%s needs %d vectors to train, have %d: using flat", kind, config.min_train_size(n, kind), n)
            kind = "flat"
        if kind == "flat":
            base = faiss.IndexFlatIP(dim)
        elif kind == "hnsw":
            base = faiss.IndexHNSWFlat(dim, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            base.hnsw.efConstruction = config.ef_construction
        else:
            quantizer = faiss.IndexFlatIP(dim)
            if kind == "ivfflat":
                base = faiss.IndexIVFFlat(quantizer, dim, config.ivf_nlist(n), faiss.METRIC_INNER_PRODUCT)
            else:
                base = faiss.IndexIVFPQ(quantizer, dim, config.ivf_nlist(n), config.ivf_pq_m(dim), config.pq_nbits,
                                        faiss.METRIC_INNER_PRODUCT)
            base.own_fields = True
            quantizer.this.disown()
            base.train(vectors)
            index = cls(dim, kind, base, config)
            index.add(ids, vectors)
            return index
        id_map = faiss.IndexIDMap2(base)
        id_map.own_fields = True
        base.this.disown()
        index = cls(dim, kind, id_map, config)
        index.add(ids, vectors)
        return index

    @property
    def structure(self) -> faiss.Index:
        """The FAISS index that holds the vectors (inside the id map for flat and HNSW)."""
        if isinstance(self._index, faiss.IndexIDMap2):
            return faiss.downcast_index(self._index.index)
        return self._index

    # --- mutation ---
    def add(self, ids, vectors) -> None:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        vectors = _as_matrix(vectors, self.dim)
        if len(ids) != len(vectors):
            raise ValueError(f"got {len(ids)} ids for {len(vectors)} vectors")
        if not len(ids):
            return
        if self._tombstones.intersection(ids.tolist()):
            raise ValueError("ids deleted from an HNSW index cannot be reused before it is rebuilt")
        self._index.add_with_ids(vectors, ids)
        self._gpu_replica = None

    def remove(self, ids) -> int:
        """Delete vectors by id; unknown ids are ignored. Returns how many were live."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if not len(ids):
            return 0
        if self.kind == "hnsw":
            live = set(self.ids().tolist())
            gone = [i for i in ids.tolist() if i in live]
            self._tombstones.update(gone)
            return len(gone)
        self._gpu_replica = None
        return int(self._index.remove_ids(faiss.IDSelectorBatch(ids)))

    def upsert(self, ids, vectors) -> None:
        self.remove(ids)
        self.add(ids, vectors)

    # --- queries ---
    def __len__(self) -> int:
        return int(self._index.ntotal) - len(self._tombstones)

    def ids(self) -> np.ndarray:
        if isinstance(self._index, faiss.IndexIDMap2):
            all_ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        else:  # IVF: the ids stored in its lists
            lists = self._index.invlists
            all_ids = np.concatenate([np.zeros(0, np.int64)] + [
                faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
                for i in range(lists.nlist) if lists.list_size(i)])
        if self._tombstones:
            all_ids = all_ids[~np.isin(all_ids, np.fromiter(self._tombstones, np.int64))]
        return all_ids

    def search(self, queries, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product among all ids, or only `allowed` ids (the filter runs inside the search):
        (scores, ids), each (nq, k); missing results have id -1 and score -inf."""
        queries = _as_matrix(queries, self.dim)
        nq = len(queries)
        fetch = min(k, int(self._index.ntotal)) if allowed is not None else \
            min(k + len(self._tombstones), int(self._index.ntotal))
        if allowed is not None and self._tombstones:
            allowed = np.setdiff1d(allowed, np.fromiter(self._tombstones, np.int64))
        if fetch <= 0 or (allowed is not None and not len(allowed)):
            return np.full((nq, k), -np.inf, np.float32), np.full((nq, k), -1, np.int64)
        scores, ids = self._search_raw(queries, fetch, allowed)
        if self._tombstones and allowed is None:
            dead = np.isin(ids, np.fromiter(self._tombstones, np.int64))
            scores, ids = np.where(dead, -np.inf, scores), np.where(dead, -1, ids)
            order = np.argsort(-scores, axis=1, kind="stable")
            scores, ids = np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)
        scores, ids = scores[:, :k], ids[:, :k]
        if ids.shape[1] < k:
            pad = k - ids.shape[1]
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
        scores = np.where(ids < 0, -np.inf, scores).astype(np.float32)
        return scores, ids

    def _search_raw(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None):
        """CPU search (with an id selector when `allowed` is given), or an unfiltered search on a GPU replica of
        the inner index (rebuilt after changes) mapped back through the ids."""
        search_threads()
        if allowed is not None:
            selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
            return self._index.search(queries, k, params=self._search_parameters(selector))
        if self.config.use_gpu and self.kind != "hnsw" and gpu_available():  # faiss has no GPU HNSW
            if self._gpu_replica is None:
                resources = faiss.StandardGpuResources()
                self._gpu_replica = (resources, faiss.index_cpu_to_gpu(resources, 0, self.structure))
            scores, pos = self._gpu_replica[1].search(queries, k)
            if self.kind in IVF_KINDS:  # a GPU IVF keeps the ids of its lists
                return scores, pos
            id_map = faiss.vector_to_array(self._index.id_map)
            return scores, np.where(pos >= 0, id_map[np.clip(pos, 0, None)], -1)
        return self._index.search(queries, k)

    def _search_parameters(self, selector):
        if self.kind == "hnsw":
            return faiss.SearchParametersHNSW(sel=selector, efSearch=self.config.ef_search)
        if self.kind in IVF_KINDS:
            return faiss.SearchParametersIVF(sel=selector, nprobe=self.config.ivf_nprobe(self.kind))
        return faiss.SearchParameters(sel=selector)

    def _apply_search_params(self) -> None:
        base = self.structure
        if isinstance(base, faiss.IndexIVF):
            base.nprobe = self.config.ivf_nprobe(self.kind)
        elif isinstance(base, faiss.IndexHNSW):
            base.hnsw.efSearch = self.config.ef_search

    # --- persistence ---
    def to_bytes(self, generation: int) -> bytes:
        header = json.dumps({"dim": self.dim, "kind": self.kind, "generation": generation,
                             "tombstones": sorted(self._tombstones)}).encode()
        payload = faiss.serialize_index(self._index).tobytes()
        body = struct.pack("<Q", len(header)) + header + payload
        return _MAGIC + struct.pack("<I", zlib.crc32(body)) + body

    @classmethod
    def from_bytes(cls, data: bytes, config: IndexConfig | None = None) -> tuple["VectorIndex", int]:
        """Inverse of `to_bytes`; returns (index, generation). Raises ValueError on a damaged file."""
        if data[:len(_MAGIC)] != _MAGIC or len(data) < len(_MAGIC) + 12:
            raise ValueError("not a vector index file (bad magic)")
        (crc,) = struct.unpack_from("<I", data, len(_MAGIC))
        body = data[len(_MAGIC) + 4:]
        if zlib.crc32(body) != crc:
            raise ValueError("vector index file is damaged (checksum mismatch)")
        (hlen,) = struct.unpack_from("<Q", body)
        header = json.loads(body[8:8 + hlen])
        raw = faiss.deserialize_index(np.frombuffer(body[8 + hlen:], dtype=np.uint8))
        loaded = faiss.downcast_index(raw)
        raw.this.disown()
        loaded.this.acquire()  # the downcast proxy, not the generic one, now frees the C++ index
        if header["kind"] in IVF_KINDS and isinstance(loaded, faiss.IndexIDMap2):
            raise ValueError("IVF checkpoint under an id map (its ids go wrong after deletes): rebuild")
        index = cls(header["dim"], header["kind"], loaded, config or IndexConfig(), header["tombstones"])
        return index, int(header["generation"])

    def save(self, path: str | Path, generation: int) -> None:
        atomic_write_bytes(path, self.to_bytes(generation))

    @classmethod
    def load(cls, path: str | Path, config: IndexConfig | None = None) -> tuple["VectorIndex", int]:
        return cls.from_bytes(Path(path).read_bytes(), config)


def _as_matrix(x, dim: int) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"expected vectors of shape (n, {dim}), got {tuple(x.shape)}")
    return x
