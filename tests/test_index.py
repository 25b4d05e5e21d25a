"""index/: FAISS caches over SQLite — ids, upsert/delete, persistence, crash recovery, approximate recall."""
import numpy as np
import pytest

from index import IndexConfig, VectorIndex, VideoStore
from index.store import normalize

DIM = 32


def clustered(n, dim=DIM, clusters=40, noise=0.15, seed=0):
    """Points around random centers: real neighbour structure, unlike i.i.d. Gaussians."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, dim))
    points = centers[rng.integers(0, clusters, n)] + noise * rng.standard_normal((n, dim))
    return normalize(points)


def exact_topk(base, queries, k):
    return np.argsort(-(queries @ base.T), axis=1)[:, :k]


def test_flat_is_exact_with_stable_ids():
    x = clustered(500)
    ids = np.arange(500, dtype=np.int64) * 1_000_003 + (1 << 40)  # large, sparse 64-bit ids
    index = VectorIndex.build(DIM, IndexConfig(kind="flat"), ids, x)
    scores, got = index.search(x[:20], 5)
    assert (got == ids[exact_topk(x, x[:20], 5)]).all()
    assert np.allclose(scores[:, 0], 1.0, atol=1e-5)


def test_upsert_and_delete_without_rebuild():
    x = clustered(200)
    index = VectorIndex.build(DIM, IndexConfig(kind="flat"), np.arange(200), x)
    assert index.remove([3, 4, 999]) == 2
    assert len(index) == 198 and 3 not in index.ids()
    index.upsert([5], x[7:8])  # id 5 now holds vector 7
    _, got = index.search(x[7:8], 2)
    assert set(got[0]) == {5, 7}


def test_approximate_recall_on_clustered_data():
    base = clustered(4000, seed=1)
    queries = normalize(base[:100] + 0.05 * np.random.default_rng(3).standard_normal((100, DIM)))
    truth = exact_topk(base, queries, 10)
    ivfpq = VectorIndex.build(DIM, IndexConfig(kind="ivfpq", nlist=32, pq_m=16, nprobe=8), np.arange(4000), base)
    hnsw = VectorIndex.build(DIM, IndexConfig(kind="hnsw"), np.arange(4000), base)
    assert (ivfpq.kind, hnsw.kind) == ("ivfpq", "hnsw")
    # IVF-PQ: the true nearest neighbour is in the top 10 (1-recall@10); HNSW: 10-recall@10
    got = ivfpq.search(queries, 10)[1]
    assert np.mean([t[0] in g for g, t in zip(got, truth)]) > 0.7
    got = hnsw.search(queries, 10)[1]
    assert np.mean([len(set(g) & set(t)) / 10 for g, t in zip(got, truth)]) > 0.9


def test_hnsw_delete_is_a_persisted_tombstone(tmp_path):
    x = clustered(300)
    index = VectorIndex.build(DIM, IndexConfig(kind="hnsw"), np.arange(300), x)
    index.remove([0])
    _, got = index.search(x[:1], 5)
    assert 0 not in got[0] and len(index) == 299
    index.save(tmp_path / "h.faiss", generation=7)
    loaded, gen = VectorIndex.load(tmp_path / "h.faiss")
    assert gen == 7 and 0 not in loaded.search(x[:1], 5)[1][0]


def test_auto_kind_and_ivfpq_fallback_when_too_small():
    config = IndexConfig(kind="auto", approximate_above=100, nlist=16, pq_m=8)
    assert VectorIndex.build(DIM, config, np.arange(50), clustered(50)).kind == "flat"
    # 150 vectors is past the switch but far too few to train 16 lists × 256 PQ codes: stays exact
    assert VectorIndex.build(DIM, config, np.arange(150), clustered(150)).kind == "flat"
    assert VectorIndex.build(DIM, config, np.arange(1000), clustered(1000)).kind == "ivfpq"


def test_damaged_file_is_refused(tmp_path):
    index = VectorIndex.build(DIM, IndexConfig(), np.arange(10), clustered(10))
    path = tmp_path / "x.faiss"
    index.save(path, 1)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="damaged"):
        VectorIndex.load(path)
    assert not list(tmp_path.glob("*.tmp"))


def test_bad_vectors_named():
    index = VectorIndex.build(DIM)
    with pytest.raises(ValueError, match=r"\(n, 32\)"):
        index.add([1], np.zeros((1, 5)))
    with pytest.raises(ValueError, match="kind"):
        IndexConfig(kind="annoy")


def make_store(path, **kw):
    return VideoStore(path, DIM, IndexConfig(**kw))


def add_videos(store, x, per_video=3):
    ids = []
    for v in range(len(x) // per_video):
        spans = [(2.0 * s, 2.0 * s + 4.0) for s in range(per_video)]
        ids.append(store.add_video(f"v{v}.mp4", 2.0 * per_video + 2, spans, x[v * per_video:(v + 1) * per_video],
                                   {"group": v % 2}))
    return ids


def test_store_search_returns_best_segment_and_filters(tmp_path):
    x = clustered(30)
    store = make_store(tmp_path)
    ids = add_videos(store, x)
    hits = store.search(x[4], k=3)
    assert hits[0].video.id == ids[1] and (hits[0].start, hits[0].end) == (2.0, 6.0)
    assert len({h.video.id for h in hits}) == len(hits)
    assert all(h.video.fields["group"] == 0 for h in store.search(x[4], k=5, filters={"group": 0}))
    assert store.search(x[4], k=5, min_score=1.01) == []


def test_store_survives_restart_and_catches_up_after_crash(tmp_path):
    x = clustered(60)
    store = make_store(tmp_path)
    ids = add_videos(store, x[:30])
    store.checkpoint()
    # writes acknowledged after the last checkpoint, then a "crash" (no close, no checkpoint)
    later = add_videos(store, x[30:])
    store.delete_video(ids[0])
    store.db.close()
    reopened = make_store(tmp_path)
    assert reopened.recovery()["segments"] == "caught-up"
    assert reopened.search(x[33], k=1)[0].video.id == later[1]
    assert ids[0] not in {h.video.id for h in reopened.search(x[0], k=20)}
    reopened.close()
    again = make_store(tmp_path)
    assert again.recovery()["segments"] == "loaded" and again.num_videos() == 19


def test_store_rebuilds_from_sqlite_when_checkpoint_is_lost(tmp_path):
    x = clustered(30)
    store = make_store(tmp_path)
    add_videos(store, x)
    store.close()
    (tmp_path / "segments.faiss").write_bytes(b"garbage")
    reopened = make_store(tmp_path)
    assert reopened.recovery()["segments"] == "rebuilt"
    assert len(reopened.search(x[0], k=100)) == 10


def test_store_upsert_texts_and_dim_guard(tmp_path):
    x = clustered(12)
    store = make_store(tmp_path)
    vid = store.add_video("a.mp4", 4.0, [(0, 4)], x[:1])
    assert store.add_video("a2.mp4", 4.0, [(0, 4)], x[5:6], video_id=vid) == vid
    assert store.search(x[5], k=1)[0].video.path == "a2.mp4" and store.num_videos() == 1
    tids = store.add_texts(["a dog", "a cat"], x[2:4])
    assert store.search_texts(x[3], k=1)[0].text.id == tids[1]
    np.testing.assert_allclose(store.segment_vectors(vid), x[5:6], atol=1e-6)
    store.close()
    with pytest.raises(ValueError, match="16-d"):
        VideoStore(tmp_path, 16)


def test_bulk_add_is_one_generation(tmp_path):
    x = clustered(40)
    store = make_store(tmp_path)
    items = [(f"b{i}.mp4", 4.0, [(0, 2), (2, 4)], x[2 * i:2 * i + 2], {"i": i}, None) for i in range(20)]
    ids = store.add_videos(items)
    assert len(set(ids)) == 20 and store.db.generation("segments") == 1
    hit = store.search(x[13], k=1)[0]
    assert hit.video.id == ids[6] and (hit.start, hit.end) == (2.0, 4.0)


def test_search_many_equals_one_by_one(tmp_path):
    x = clustered(60)
    store = make_store(tmp_path)
    add_videos(store, x)
    queries = x[[0, 7, 31, 59]]
    batched = store.search_many(queries, k=4, min_scores=[-1, -1, 0.5, -1], filters=[None, {"group": 1}, None, None])
    single = [store.search(queries[0], 4), store.search(queries[1], 4, filters={"group": 1}),
              store.search(queries[2], 4, min_score=0.5), store.search(queries[3], 4)]
    for b, s in zip(batched, single):
        assert [(h.video.id, h.start, round(h.score, 5)) for h in b] == [(h.video.id, h.start, round(h.score, 5))
                                                                        for h in s]
    assert all(h.score >= 0.5 for h in batched[2])


def test_changing_the_configured_kind_rebuilds(tmp_path):
    x = clustered(30)
    store = make_store(tmp_path, kind="flat")
    add_videos(store, x)
    store.close()
    hnsw = make_store(tmp_path, kind="hnsw")
    assert hnsw.recovery()["segments"] == "rebuilt" and hnsw._caches["segments"].index.kind == "hnsw"
    assert hnsw.search(x[4], k=1)[0].video.path == "v1.mp4"
