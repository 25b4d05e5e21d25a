"""The contract every library backend keeps (index.backend.Library), run against each backend, plus the searches
built on it (index.search): moments, pages, filters, keywords, hybrid, "A then B".

Backends: FAISS + SQLite, and Milvus (index.milvus_library) on a real milvus-lite server started by this module.
The Milvus 2.3 standalone binary runs the subset marked `milvus23` (what a 2.3 server can do), inside a network
namespace: tests/test_milvus_standalone.py runs this module there with VMR_CONTRACT_BACKEND=milvus23."""
import itertools
import os

import numpy as np
import pytest

from index import FaissLibrary, IndexConfig, NewVideo, parse_filter
from index.backend import Unsupported
from index.filters import matches, to_milvus
from index.records import normalize
from index.search import FUSION_DEPTH, Query, fuse, search
from milvus_servers import ROOT_TOKEN, MilvusLite, MilvusStandalone

DIM = 32
subset = pytest.mark.milvus23  # what the Milvus 2.3 binary runs too
_names = itertools.count()


class FaissBackend:
    name = "faiss"
    keywords = True
    bm25_over_filtered_rows = False  # a filter does not change the BM25 statistics

    def __init__(self, root, server=None):
        self.root = root

    def open(self):
        return FaissLibrary(self.root, DIM, IndexConfig(kind="flat"))

    def restart(self):
        """The library lives in this process: closing and reopening it is the restart."""


class MilvusBackend:
    """A fresh set of collections per test on the module's server, with an exact (FLAT) index."""

    name, kind, keywords, token = "milvus-lite", "flat", True, None
    bm25_over_filtered_rows = True  # measured: milvus-lite computes BM25 statistics over the rows a filter keeps

    def __init__(self, root, server):
        self.server = server
        self.collection = f"t{os.getpid()}_{next(_names)}"

    def open(self):
        from index.milvus_library import MilvusLibrary

        return MilvusLibrary(self.server.uri, DIM, self.collection, token=self.token, index_kind=self.kind)

    def restart(self):
        self.server.restart()


class Milvus23Flat(MilvusBackend):
    name, keywords, token = "milvus-2.3-flat", False, ROOT_TOKEN


class Milvus23Hnsw(Milvus23Flat):
    name, kind = "milvus-2.3-hnsw", "hnsw"


class Milvus23Ivf(Milvus23Flat):
    name, kind = "milvus-2.3-ivf", "ivf"


STANDALONE = os.environ.get("VMR_CONTRACT_BACKEND") == "milvus23"
BACKENDS = [Milvus23Flat, Milvus23Hnsw, Milvus23Ivf] if STANDALONE else [FaissBackend, MilvusBackend]


@pytest.fixture(scope="module")
def milvus_server(tmp_path_factory):
    """One server for the module (each test has collections of its own), stopped by its process id."""
    root = tmp_path_factory.mktemp("milvus")
    server = (MilvusStandalone if STANDALONE else MilvusLite)(root / "data").start()
    try:
        if STANDALONE:  # authentication is on: the root token works, a wrong one is refused
            from pymilvus import MilvusClient, MilvusException

            MilvusClient(uri=server.uri, token=ROOT_TOKEN, dedicated=True).list_collections()
            with pytest.raises(MilvusException):
                MilvusClient(uri=server.uri, token="root:wrong", dedicated=True).list_collections()
        yield server
    finally:
        server.kill()


@pytest.fixture(params=BACKENDS, ids=lambda b: b.name)
def backend(request, tmp_path):
    server = request.getfixturevalue("milvus_server") if request.param is not FaissBackend else None
    return request.param(tmp_path / "library", server)


@pytest.fixture
def library(backend):
    lib = backend.open()
    yield lib
    lib.close()


def unit(rng, n, dim=DIM):
    return normalize(rng.standard_normal((n, dim)))


def windows(n, window=8.0, stride=4.0):
    return [(i * stride, i * stride + window) for i in range(n)]


def fill(library, n_videos=40, segments=5, seed=0):
    """Videos of `segments` windows each, with clustered vectors and user fields of every type."""
    rng = np.random.default_rng(seed)
    centers = unit(rng, 8)
    items, vectors = [], []
    for v in range(n_videos):
        x = normalize(centers[rng.integers(0, 8, segments)] + 0.3 * rng.standard_normal((segments, DIM)))
        vectors.append(x)
        fields = {"group": v % 4, "kind": ["cat", "dog", "bird"][v % 3], "tags": [f"t{v % 5}", "all"],
                  "rating": float(v % 10) / 2, "public": v % 2 == 0, "caption": f"clip number {v} of the zebra set"
                  if v % 7 == 0 else f"clip number {v}", "nums": [v % 3, v % 5 + 10, "x"],
                  "quote": 'say "hi" \\ ok' if v % 2 else None}
        items.append(NewVideo(f"/media/video_{v}.mp4", segments * 4.0 + 4, windows(segments), x, fields,
                              title=f"video {v}", content_hash=f"hash{v}"))
    ids = library.add_videos(items)
    return ids, vectors


def exact_video_ranking(vectors, ids, q, keep=None):
    best = [(float((x @ q).max()), vid) for x, vid in zip(vectors, ids) if keep is None or vid in keep]
    return [vid for _, vid in sorted(best, key=lambda p: (-p[0], p[1]))]


# ------------------------------------------------------------------------------------------------ storage

@subset
def test_add_get_count_and_ids_never_reused(library):
    ids, _ = fill(library, 6)
    assert library.num_videos() == 6 and library.num_segments() == 30 and len(set(ids)) == 6
    record = library.get_video(ids[2])
    assert record.title == "video 2" and record.fields["kind"] == "bird" and record.content_hash == "hash2"
    assert [(s.start, s.end) for s in record.segments] == windows(5)
    assert library.find_by_hash("hash4") == ids[4] and library.find_by_hash("nope") is None
    deleted = library.delete_video(ids[5])
    assert deleted.id == ids[5] and library.get_video(ids[5]) is None and library.delete_video(ids[5]) is None
    new = library.add_videos([NewVideo("/media/n.mp4", 4.0, [(0, 4)], unit(np.random.default_rng(1), 1))])
    assert new[0] > max(ids)
    assert library.num_videos() == 6 and library.num_segments() == 26


@subset
def test_upsert_replaces_segments_and_refuses_unknown_ids(library):
    ids, _ = fill(library, 3)
    v = unit(np.random.default_rng(5), 2)
    version = library.version()
    assert library.add_videos([NewVideo("/media/new.mp4", 8.0, [(0, 4), (4, 8)], v, {"x": 1}, video_id=ids[1])]) \
        == [ids[1]]
    assert library.version() != version
    record = library.get_video(ids[1])
    assert record.path == "/media/new.mp4" and len(record.segments) == 2 and record.fields == {"x": 1}
    assert library.search_videos(v[1:2], 1)[0][0].video.id == ids[1]
    with pytest.raises(KeyError):
        library.add_videos([NewVideo("/media/z.mp4", 4.0, [(0, 4)], v[:1], video_id=ids[-1] + 1000)])
    assert library.num_videos() == 3


@subset
def test_fields_that_cannot_be_served_back_are_refused_and_nothing_is_stored(library):
    fill(library, 2)
    for fields in [{"bad": "\ud800"}, {"deep": [[[[[[[[[[1]]]]]]]]]]}, {"big": 10 ** 30}, {"nan": float("nan")},
                   {"": 1}]:
        with pytest.raises(ValueError):
            library.add_videos([NewVideo("/media/a.mp4", 4.0, [(0, 4)], unit(np.random.default_rng(0), 1), fields)])
        assert library.num_videos() == 2 and library.num_segments() == 10, fields


@subset
def test_persists_across_restart(backend):
    lib = backend.open()
    ids, vectors = fill(lib, 10)
    lib.delete_video(ids[0])
    lib.set_meta("fingerprint", "abc")
    lib.close()
    backend.restart()
    again = backend.open()
    try:
        assert again.num_videos() == 9 and again.get_meta("fingerprint") == "abc"
        assert again.search_videos(vectors[3][2:3], 1)[0][0].video.id == ids[3]
    finally:
        again.close()


@subset
def test_texts_gallery(library):
    v = unit(np.random.default_rng(2), 3)
    tids = library.add_texts(["a dog", "a cat", "a bird"], v, [{"n": 1}, {}, {}])
    assert library.num_texts() == 3
    hit = library.search_texts(v[1], 1)[0]
    assert hit.text.id == tids[1] and hit.text.text == "a cat"


def test_captions_are_listed_and_re_embedded_in_place(backend):
    """What reindex does to the text gallery: new vectors, same ids, texts and fields, also after a restart (a
    backend that caches vectors must not serve the old ones from a cache written before the change)."""
    rng = np.random.default_rng(3)
    lib = backend.open()
    tids = lib.add_texts([f"caption {i}" for i in range(250)], unit(rng, 250), [{"n": i} for i in range(250)])
    lib.checkpoint()
    listed = lib.list_texts(0, 100) + lib.list_texts(100, 100) + lib.list_texts(200, 100)
    assert [t.id for t in listed] == tids and listed[7].text == "caption 7" and listed[7].fields == {"n": 7}
    assert lib.list_texts(250, 100) == []
    fresh = unit(rng, 250)
    lib.replace_text_vectors(tids, fresh)
    assert lib.search_texts(fresh[42], 1)[0].text.id == tids[42]
    with pytest.raises(KeyError):
        lib.replace_text_vectors([max(tids) + 1], fresh[:1])
    again = backend.open()  # as after a crash: the first one never wrote its caches again
    try:
        hit = again.search_texts(fresh[42], 1)[0]
        assert (hit.text.id, hit.text.text) == (tids[42], "caption 42") and hit.score == pytest.approx(1.0, abs=1e-5)
        assert again.num_texts() == 250
    finally:
        again.close()
        lib.close()


@subset
def test_list_videos_pages_filters_and_sorts(library):
    ids, _ = fill(library, 12)
    page, total = library.list_videos(None, 0, 5)
    assert total == 12 and [r.id for r in page] == ids[:5]
    rest, _ = library.list_videos(None, 5, 100)
    assert [r.id for r in page + rest] == ids
    dogs, total = library.list_videos(parse_filter({"kind": "dog"}), 0, 100, sort="title", descending=True)
    assert total == 4 and [r.title for r in dogs] == sorted((f"video {i}" for i in (1, 4, 7, 10)), reverse=True)


# ------------------------------------------------------------------------------------------------ search

@subset
def test_search_is_exact_grouped_by_video_with_the_best_segment(library):
    ids, vectors = fill(library, 40)
    rng = np.random.default_rng(9)
    for q in unit(rng, 5):
        hits = library.search_videos(q[None], 10)[0]
        assert [h.video.id for h in hits] == exact_video_ranking(vectors, ids, q)[:10]
        for h in hits:
            x = vectors[ids.index(h.video.id)]
            best = int(np.argmax(x @ q))
            assert h.score == pytest.approx(float(x[best] @ q), abs=1e-5)
            assert (h.start, h.end) == windows(5)[best]


FILTER_SPECS = [{"kind": "dog"}, {"group": [1, 3]}, {"tags": "t2"}, {"rating": {"gte": 1, "lt": 3}}, {"public": True},
                {"duration": {"gt": 20}}, {"title": ["video 3", "video 5"]}, {"kind": "dog", "rating": {"lte": 2.5}},
                {"video_id": {"in": [1, 2, 40]}}, {"missing": 1}, {"group": "1"}, {"public": 1}, {"rating": 1},
                {"tags": ["t1", "t3"]}, {"tags": {"gte": 1}}, {"nums": {"gt": 12}}, {"nums": {"lt": 1}}, {"nums": 2.0},
                {"quote": 'say "hi" \\ ok'}, {"title": 5}, {"duration": {"in": [24]}}, {"video_id": {"in": ["1", 2.5]}},
                {"title": {"gt": 5}}]


def check_filters(library, ids, vectors, specs, builtins=True):
    """Each filter inside the search and the listing keeps exactly the videos `matches` keeps (one library for all
    of them: a Milvus 2.3 server takes seconds to make and load a library's collections)."""
    records = library.get_videos(ids)
    q = unit(np.random.default_rng(3), 1)[0]
    for spec in specs:
        flt = parse_filter(spec)
        keep = {vid for vid, r in records.items()
                if matches(r.fields, {"duration": r.duration, "created": r.created, "title": r.title, "video_id": r.id}
                           if builtins else {}, flt)}
        hits = library.search_videos(q[None], 10, flt)[0]
        assert [h.video.id for h in hits] == exact_video_ranking(vectors, ids, q, keep)[:10], spec
        listed, total = library.list_videos(flt, 0, 100)
        assert {r.id for r in listed} == keep and total == len(keep), spec


@subset
def test_filters_run_inside_the_search(library):
    ids, vectors = fill(library, 40)
    check_filters(library, ids, vectors, FILTER_SPECS)


@subset
def test_a_filter_keeping_one_percent_still_fills_k(backend):
    lib = backend.open()
    try:
        rng = np.random.default_rng(0)
        items = [NewVideo(f"/m/{v}.mp4", 8.0, windows(2), unit(rng, 2), {"rare": v % 100 == 0}) for v in range(2000)]
        ids = lib.add_videos(items)
        hits = lib.search_videos(unit(rng, 1), 10, parse_filter({"rare": True}))[0]
        assert len(hits) == 10 and {h.video.id for h in hits} <= set(ids[::100])
    finally:
        lib.close()


@subset
def test_exclude_and_min_score(library):
    ids, vectors = fill(library, 20)
    q = vectors[4][0]
    assert library.search_videos(q[None], 1)[0][0].video.id == ids[4]
    hits = library.search_videos(q[None], 5, exclude=frozenset({ids[4]}))[0]
    assert ids[4] not in {h.video.id for h in hits} and len(hits) == 5
    assert all(h.score >= 0.5 for h in library.search_videos(q[None], 20, min_score=0.5)[0])
    assert library.search_videos(q[None], 5, min_score=1.01)[0] == []


@subset
def test_keyword_search(backend, library):
    ids, _ = fill(library, 30)
    if not backend.keywords:
        with pytest.raises(Unsupported, match="no BM25"):
            library.keyword_search("zebra", 10)
        return
    found = library.keyword_search("zebra", 10)
    assert {vid for vid, _ in found} == {ids[i] for i in (0, 7, 14, 21, 28)}
    assert all(score > 0 for _, score in found)
    assert {vid for vid, _ in library.keyword_search("video_12", 5)} >= {ids[12]}  # the file name
    cats = library.keyword_search("zebra", 10, parse_filter({"kind": "cat"}))
    expected = [(vid, s) for vid, s in found if library.get_video(vid).fields["kind"] == "cat"]
    assert {vid for vid, _ in cats} == {vid for vid, _ in expected}
    if not backend.bm25_over_filtered_rows:
        assert cats == expected
    assert library.keyword_search("!!!", 10) == [] and library.keyword_search("nothing-like-it", 10) == []


# ------------------------------------------------------------------------------------------------ index.search

def query(vector, **kw):
    return Query(vector=np.asarray(vector, np.float32), **kw)


@subset
def test_pages_never_overlap_and_concatenate_to_one_larger_request(backend, library):
    fill(library, 40)
    q = unit(np.random.default_rng(4), 1)[0]
    for mode in ("vector", "hybrid", "keyword") if backend.keywords else ("vector",):
        whole = search(library, [query(q, text="zebra clip", mode=mode, k=24)])[0]
        pages, offset = [], 0
        while True:
            page = search(library, [query(q, text="zebra clip", mode=mode, k=5, offset=offset)])[0]
            pages += [r.video.id for r in page.results]
            offset += 5
            if not page.has_more:
                break
        assert pages[:24] == [r.video.id for r in whole.results], mode
        assert len(pages) == len(set(pages))


@subset
def test_results_carry_moments_best_first(library):
    rng = np.random.default_rng(0)
    base = unit(rng, 1)[0]
    other = unit(rng, 6)
    x = other.copy()
    x[3] = base  # the match is the 4th window only
    vid = library.add_videos([NewVideo("/m/long.mp4", 28.0, windows(6), x)])[0]
    page = search(library, [query(base, k=1, moments_per_video=2)])[0]
    top = page.results[0]
    assert top.video.id == vid and top.score == pytest.approx(1.0, abs=1e-5)
    assert top.moments[0].score == pytest.approx(top.score) and top.moments[0].start >= 12 and top.moments[0].end <= 20
    np.testing.assert_allclose(top.moment_vectors[0], base, atol=1e-5)
    assert len(top.moments) <= 2


@subset
def test_group_by_moment_is_a_flat_list_best_first(library):
    fill(library, 20)
    q = unit(np.random.default_rng(6), 1)[0]
    flat = search(library, [query(q, group_by="moment", k=15)])[0]
    scores = [r.moment.score for r in flat.results]
    assert scores == sorted(scores, reverse=True) and len(flat.results) == 15
    grouped = search(library, [query(q, k=1)])[0]
    assert flat.results[0].video.id == grouped.results[0].video.id


@subset
def test_hybrid_is_reciprocal_rank_fusion(backend, library):
    ids, _ = fill(library, 30)
    q = unit(np.random.default_rng(8), 1)[0]
    if not backend.keywords:
        with pytest.raises(Unsupported, match="use mode vector"):
            search(library, [query(q, text="zebra", mode="hybrid", k=10)])
        return
    vector = [(h.video.id, h.score) for h in library.search_videos(q[None], FUSION_DEPTH)[0]]
    keyword = library.keyword_search("zebra", FUSION_DEPTH)
    expected = [vid for vid, _ in fuse([vector, keyword])][:10]
    got = search(library, [query(q, text="zebra", mode="hybrid", k=10)])[0]
    assert [r.video.id for r in got.results] == expected
    assert set(expected[:3]) & {ids[i] for i in (0, 7, 14, 21, 28)}  # keyword hits rise to the top


@subset
def test_then_needs_the_second_event_after_the_first(library):
    rng = np.random.default_rng(1)
    a, b = unit(rng, 2)
    filler = unit(rng, 12)
    forward, backward = filler[:6].copy(), filler[6:].copy()
    forward[0], forward[4] = a, b  # A early, B late
    backward[0], backward[4] = b, a  # the twin: B early, A late
    fwd, bwd = library.add_videos([NewVideo("/m/f.mp4", 28.0, windows(6), forward),
                                   NewVideo("/m/b.mp4", 28.0, windows(6), backward)])
    page = search(library, [query(a, then=b, max_gap=30, k=5)])[0]
    assert [r.video.id for r in page.results] == [fwd]
    first, then = page.results[0].moments
    assert first.end <= then.start
    assert [r.video.id for r in search(library, [query(b, then=a, max_gap=30, k=5)])[0].results] == [bwd]


@subset
def test_sort_by_a_field_orders_the_relevant_candidates(library):
    fill(library, 30)
    q = unit(np.random.default_rng(2), 1)[0]
    page = search(library, [query(q, sort="title", descending=False, k=30)])[0]
    titles = [r.video.title for r in page.results]
    assert titles == sorted(titles) and len(titles) == 30


@subset
def test_batched_queries_equal_one_by_one(library):
    fill(library, 30)
    qs = unit(np.random.default_rng(7), 4)
    specs = [dict(k=4), dict(k=4, flt=parse_filter({"group": 1})), dict(k=4, min_score=0.3), dict(k=6, offset=2)]
    batched = search(library, [query(v, **s) for v, s in zip(qs, specs)])
    for v, s, page in zip(qs, specs, batched):
        single = search(library, [query(v, **s)])[0]
        assert [(r.video.id, round(r.score, 5)) for r in page.results] == \
            [(r.video.id, round(r.score, 5)) for r in single.results]


@subset
def test_rescored_top_is_reordered_and_pages_stay_consistent(library):
    ids, _ = fill(library, 30)
    q = unit(np.random.default_rng(11), 1)[0]
    plain = [r.video.id for r in search(library, [query(q, k=20)])[0].results]

    def reverse_top(results):  # a rescore that turns the top candidates upside down
        return [float(i) for i in range(len(results))]

    whole = search(library, [query(q, k=20, rescore=reverse_top, rescore_depth=8)])[0].results
    assert [r.video.id for r in whole] == plain[:8][::-1] + plain[8:20]
    assert [r.rescored for r in whole[:8]] == [7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0]
    assert all(r.rescored is None for r in whole[8:])
    paged = [r.video.id for offset in range(0, 20, 5)
             for r in search(library, [query(q, k=5, offset=offset, rescore=reverse_top, rescore_depth=8)])[0].results]
    assert paged == [r.video.id for r in whole]


@subset
@pytest.mark.parametrize("spec", [None, {"kind": "dog"}, {"nums": {"gte": 11}}])
def test_the_same_top_k_as_the_faiss_backend_on_the_same_library(backend, library, tmp_path, spec):
    ids, vectors = fill(library, 40)
    reference = FaissLibrary(tmp_path / "reference", DIM, IndexConfig(kind="flat"))
    try:
        ref_ids, _ = fill(reference, 40)
        flt = parse_filter(spec)
        queries = unit(np.random.default_rng(11), 6)
        got, want = library.search_videos(queries, 10, flt), reference.search_videos(queries, 10, flt)
        for g, w in zip(got, want):
            assert [ids.index(h.video.id) for h in g] == [ref_ids.index(h.video.id) for h in w]
            assert [h.score for h in g] == pytest.approx([h.score for h in w], abs=1e-5)
            assert [(h.start, h.end) for h in g] == [(h.start, h.end) for h in w]
    finally:
        reference.close()


# ------------------------------------------------------------------------------------------ declared fields (Milvus)

DECLARED = {"kind": "text", "group": "number", "rating": "number", "public": "bool"}


@pytest.fixture(params=[b for b in BACKENDS if b is not FaissBackend], ids=lambda b: b.name)
def declared_library(request, tmp_path):
    """A Milvus library whose fill() fields kind, group, rating and public are typed columns."""
    from index.milvus_library import MilvusLibrary

    backend = request.param(tmp_path / "library", request.getfixturevalue("milvus_server"))
    lib = MilvusLibrary(backend.server.uri, DIM, backend.collection, token=backend.token, index_kind=backend.kind,
                        declared=DECLARED)
    yield backend, lib
    lib.close()


@subset
def test_declared_fields_are_typed_columns_that_filters_compare(declared_library):
    from pymilvus import DataType

    backend, library = declared_library
    columns = {f["name"]: f["type"] for f in
               library.client.describe_collection(library.names["segments"])["fields"]}
    assert (columns["u_kind"], columns["u_group"], columns["u_public"]) == (DataType.VARCHAR, DataType.DOUBLE,
                                                                            DataType.BOOL)
    specs = [{"kind": "dog"}, {"group": [1, 3]}, {"rating": {"gte": 1, "lt": 3}}, {"public": True},
             {"kind": "dog", "rating": {"lte": 2.5}}, {"group": "1"}, {"public": 1}, {"rating": 1}, {"kind": {"gt": 1}},
             {"group": {"in": [1.0, True]}}, {"kind": ["cat", 3], "tags": "t2"}]
    for spec in specs:  # the typed columns are what is compared
        assert to_milvus(parse_filter(spec), DECLARED) != to_milvus(parse_filter(spec)), spec
    ids, vectors = fill(library, 40)
    check_filters(library, ids, vectors, specs, builtins=False)


@subset
def test_a_video_without_its_declared_fields_is_refused_and_the_declaration_is_fixed(declared_library):
    from index.milvus_library import MilvusLibrary

    backend, library = declared_library
    vector = unit(np.random.default_rng(0), 1)
    good = {"kind": "cat", "group": 1, "rating": 0.5, "public": False}
    for bad, message in [({k: v for k, v in good.items() if k != "kind"}, "'kind' is declared text"),
                         ({**good, "group": "1"}, "'group' is declared number"),
                         ({**good, "public": 0}, "'public' is declared bool"),
                         ({**good, "kind": ["cat"]}, "'kind' is declared text")]:
        with pytest.raises(ValueError, match=message):
            library.add_videos([NewVideo("/media/ok.mp4", 4.0, [(0, 4)], vector, good),
                                NewVideo("/media/bad.mp4", 4.0, [(0, 4)], vector, bad)])
    assert library.num_videos() == 0 and library.num_segments() == 0  # nothing of the batch was written
    library.add_videos([NewVideo("/media/ok.mp4", 4.0, [(0, 4)], vector, {**good, "extra": "json"})])
    with pytest.raises(ValueError, match="made with the declared fields"):
        MilvusLibrary(backend.server.uri, DIM, backend.collection, token=backend.token, index_kind=backend.kind,
                      declared={"kind": "text"})
    with pytest.raises(ValueError, match="made with the declared fields"):
        MilvusLibrary(backend.server.uri, DIM, backend.collection, token=backend.token, index_kind=backend.kind)
