"""GET /fields' use case: the user fields of a library with their types, carriers and most frequent values."""
import numpy as np

from index import FaissLibrary, NewVideo
from service.fields import describe_fields


def library_with(tmp_path, all_fields: list[dict]) -> FaissLibrary:
    library = FaissLibrary(tmp_path / "index", 4)
    vectors = np.eye(4, dtype=np.float32)[:1]
    library.add_videos([NewVideo(f"v{i}.mp4", 2.0, [(0.0, 2.0)], vectors, fields) for i, fields in
                        enumerate(all_fields)])
    return library


def test_fields_with_their_types_and_most_frequent_values(tmp_path):
    library = library_with(tmp_path, [
        {"kind": "cat", "rank": 1, "tags": ["a", "b", "a"], "flag": True, "meta": {"x": 1}},
        {"kind": "cat", "rank": 2.5, "tags": ["b"], "flag": 1},
        {"kind": "dog", "tags": "c", "note": None},
    ])
    summaries, sampled = describe_fields(library)
    assert sampled == 3
    by_name = {s.name: s for s in summaries}
    assert list(by_name) == ["flag", "kind", "meta", "note", "rank", "tags"]
    kind = by_name["kind"]
    assert (kind.type, kind.videos, kind.distinct, kind.values) == ("text", 3, 2, [("cat", 2), ("dog", 1)])
    assert (by_name["rank"].type, by_name["rank"].values) == ("number", [(1, 1), (2.5, 1)])
    # a list's items are the values, each counted once per video; "b" is in two videos
    assert (by_name["tags"].type, by_name["tags"].values) == ("text", [("b", 2), ("a", 1), ("c", 1)])
    # true and 1 stay apart, as they do in filters
    flag = by_name["flag"]
    assert flag.type == "mixed" and flag.distinct == 2 and {type(v) for v, _ in flag.values} == {bool, int}
    assert (by_name["meta"].type, by_name["meta"].values) == ("object", [])
    assert (by_name["note"].type, by_name["note"].videos, by_name["note"].values) == ("null", 1, [])


def test_only_the_newest_videos_are_read_and_values_are_capped(tmp_path):
    library = library_with(tmp_path, [{"n": i % 30, "old": i < 5} for i in range(60)])
    summaries, sampled = describe_fields(library, sample=50, examples=4)
    by_name = {s.name: s for s in summaries}
    assert sampled == 50 and by_name["n"].videos == 50 and by_name["n"].distinct == 30
    assert len(by_name["n"].values) == 4 and all(count in (1, 2) for _, count in by_name["n"].values)
    # the 5 oldest videos (the only ones with old=true) are beyond the newest 50
    assert by_name["old"].values == [(False, 50)]
