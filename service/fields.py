"""The library's user fields, for building filters (GET /fields): each field's name, JSON type, how many videos
carry it and its most frequent values, read from the newest videos. Every backend answers it through
`Library.list_videos`, so no index support is needed."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from index import Library

SAMPLE = 1000  # newest videos read: enough to describe the fields, and a bounded cost on a large library
PAGE = 200
EXAMPLES = 10

Scalar = str | int | float | bool


@dataclass
class FieldSummary:
    name: str
    type: str  # text, number, boolean, object (not filterable), mixed or null
    videos: int  # sampled videos that carry the field
    distinct: int  # distinct values among them (a list's items count one by one)
    values: list[tuple[Scalar, int]]  # (value, videos that hold it), most frequent first, at most EXAMPLES


def describe_fields(library: Library, sample: int = SAMPLE,
                    examples: int = EXAMPLES) -> tuple[list[FieldSummary], int]:
    """The user fields of the newest `sample` videos, by name, and how many videos were read."""
    carriers: Counter[str] = Counter()
    kinds: dict[str, set[str]] = {}
    values: dict[str, Counter] = {}
    read = 0
    while read < sample:
        records, _ = library.list_videos(None, read, min(PAGE, sample - read), "created", descending=True)
        for record in records:
            for name, value in record.fields.items():
                carriers[name] += 1
                # a list matches a filter when any of its items does (index.filters): its items are the values
                items = [(_kind(v), v) for v in (value if isinstance(value, list) else [value]) if v is not None]
                kinds.setdefault(name, set()).update(kind for kind, _ in items)
                # keyed by kind too, so that true and 1 stay apart as they do in filters
                values.setdefault(name, Counter()).update({item for item in items if item[0] != "object"})
        read += len(records)
        if len(records) < PAGE:
            break
    summaries = []
    for name in sorted(carriers):
        kind = next(iter(kinds[name])) if len(kinds[name]) == 1 else "mixed" if kinds[name] else "null"
        common = sorted(values[name].items(), key=lambda p: (-p[1], str(p[0][1])))[:examples]
        summaries.append(FieldSummary(name, kind, carriers[name], len(values[name]),
                                      [(value, count) for (_, value), count in common]))
    return summaries, read


def _kind(value) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "text"
    return "number" if isinstance(value, (int, float)) else "object"
