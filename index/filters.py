"""Filters on videos, applied inside the index search: equality and any-of on user fields, ranges on numbers.

Translations: `to_sql` (SQLite, the embedded library) and `to_milvus` (a Milvus boolean expression over typed
built-in columns, typed columns of the user fields a library declares, and the `facets` JSON column that `facets`
computes from the other user fields).

A filter is a JSON object: `{"corpus": "msrvtt"}` (equality), `{"tag": ["a", "b"]}` (any of), `{"duration":
{"gte": 10, "lt": 60}}` (a range; operators gt, gte, lt, lte, eq, in). Built-in fields: `duration` (seconds),
`created` (ingest time, seconds since the epoch), `title` and `video_id`; every other name is a user field. A user
field holding a list matches a condition when any of its items does.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

BUILTIN = {"duration": "duration", "created": "created", "title": "title", "video_id": "id"}
SORT_FIELDS = tuple(BUILTIN)  # what a listing or a search can be ordered by, besides the score
NUMERIC_BUILTIN = ("duration", "created", "video_id")
RANGE_OPS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
OPS = (*RANGE_OPS, "eq", "in")
FIELD_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}$")
MAX_CONDITIONS = 16
MAX_VALUES = 256

Scalar = str | int | float | bool


@dataclass(frozen=True)
class Condition:
    field: str
    op: str  # one of OPS
    value: Any  # a scalar; a tuple of scalars for "in"


@dataclass(frozen=True)
class Filter:
    conditions: tuple[Condition, ...]

    def key(self) -> str:
        """A canonical text of the filter (cache keys, page tokens)."""
        return json.dumps([[c.field, c.op, c.value] for c in self.conditions], sort_keys=True)


def parse_filter(spec: dict | None) -> Filter | None:
    """The filter a JSON object describes, or None for no filter; ValueError says what is wrong."""
    if not spec:
        return None
    if not isinstance(spec, dict):
        raise ValueError("filters must be a JSON object of field: condition")
    conditions = []
    for name, want in spec.items():
        if not isinstance(name, str) or not FIELD_NAME.match(name):
            raise ValueError(f"filter field {name!r}: names are 1-64 letters, digits, _ . -")
        if isinstance(want, dict):
            if not want:
                raise ValueError(f"filter {name!r}: an empty condition")
            for op, value in want.items():
                conditions.append(_condition(name, op, value))
        elif isinstance(want, list):
            conditions.append(_condition(name, "in", want))
        else:
            conditions.append(_condition(name, "eq", want))
    if len(conditions) > MAX_CONDITIONS:
        raise ValueError(f"{len(conditions)} filter conditions; the limit is {MAX_CONDITIONS}")
    return Filter(tuple(sorted(conditions, key=lambda c: (c.field, c.op, json.dumps(c.value)))))


def _condition(name: str, op: str, value) -> Condition:
    if op not in OPS:
        raise ValueError(f"filter {name!r}: unknown operator {op!r}; use one of {', '.join(OPS)}")
    if op == "in":
        if not isinstance(value, list) or not value or len(value) > MAX_VALUES:
            raise ValueError(f"filter {name!r}: 'in' takes a list of 1 to {MAX_VALUES} values")
        for item in value:
            _check_scalar(name, item)
        return Condition(name, op, tuple(value))
    _check_scalar(name, value)
    if op in RANGE_OPS and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ValueError(f"filter {name!r}: {op} compares numbers, got {value!r}")
    if name in NUMERIC_BUILTIN and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ValueError(f"filter {name!r} is a number, got {value!r}")
    return Condition(name, op, value)


def _check_scalar(name: str, value) -> None:
    if isinstance(value, str):
        if len(value) > 1024:
            raise ValueError(f"filter {name!r}: a value longer than 1024 characters")
    elif isinstance(value, bool):
        pass
    elif isinstance(value, int):
        if abs(value) >= 2**63:
            raise ValueError(f"filter {name!r}: {value} is outside the 64-bit range")
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"filter {name!r}: not a finite number")
    else:
        raise ValueError(f"filter {name!r}: values are strings, numbers or booleans, got {type(value).__name__}")


def to_sql(flt: Filter) -> tuple[str, list]:
    """A WHERE clause over the `videos` table (user fields in its JSON `fields` column) and its parameters.

    JSON types are kept apart as in `matches`: a string never equals a number, true is not 1."""
    clauses, params = [], []
    for c in flt.conditions:
        if c.field in BUILTIN:  # typed too: SQLite would compare the text "1" equal to the integer id 1
            clause, values = _compare(BUILTIN[c.field], f"typeof({BUILTIN[c.field]})", c)
        else:
            path = f'$."{c.field}"'
            inner, inner_values = _compare("j.value", "j.type", c)
            clause = (f"(json_type(videos.fields, ?) != 'object' AND EXISTS (SELECT 1 FROM json_each(videos.fields, ?)"
                      f" AS j WHERE {inner}))")
            values = [path, path] + inner_values
        clauses.append(clause)
        params.extend(values)
    return " AND ".join(clauses), params


def _compare(expr: str, type_expr: str, c: Condition) -> tuple[str, list]:
    """`expr` against the condition; its type (`type_expr`: a json_each type column or a typeof()) must fit too."""
    values = c.value if c.op == "in" else (c.value,)
    if c.op in RANGE_OPS:
        return f"({type_expr} IN ('integer', 'real') AND {expr} {RANGE_OPS[c.op]} ?)", [c.value]
    parts, params = [], []
    for kind, types in (("text", "('text')"), ("number", "('integer', 'real')"), ("bool", "('true', 'false')")):
        chosen = [int(v) if kind == "bool" else v for v in values if _kind(v) == kind]
        if chosen:
            parts.append(f"({type_expr} IN {types} AND {expr} IN ({', '.join('?' * len(chosen))}))")
            params.extend(chosen)
    return f"({' OR '.join(parts)})", params


def _kind(value) -> str:
    return "bool" if isinstance(value, bool) else "text" if isinstance(value, str) else "number"


def facets(fields: dict) -> dict:
    """What Milvus filters user fields on, keeping `matches` semantics: for each filterable field, its scalar
    items as typed tokens ("t": equality and any-of, JSON types apart, 1 == 1.0), and the least and greatest of
    its numbers ("lo", "hi": a range holds for some item exactly when it holds for the greatest (gt, gte) or the
    least (lt, lte), and each condition is checked on its own)."""
    out: dict[str, dict] = {"t": {}, "lo": {}, "hi": {}}
    for name, value in fields.items():
        if not FIELD_NAME.match(name):
            continue  # a name no filter can spell
        items = [v for v in (value if isinstance(value, list) else [value])
                 if v is not None and not isinstance(v, (dict, list))]
        if items:
            out["t"][name] = sorted({_token(v) for v in items})
        numbers = [v for v in items if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if numbers:
            out["lo"][name], out["hi"][name] = min(numbers), max(numbers)
    return out


DECLARED_KINDS = ("text", "number", "bool")  # the types a user field can be declared with
DECLARED_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")  # what a column name may be


def declared_column(name: str) -> str:
    """The typed column of a declared user field (prefixed: a user field may be called like a built-in column)."""
    return f"u_{name}"


def parse_declared(spec: str | None) -> dict[str, str]:
    """"camera:text,year:number,indoor:bool" -> {name: kind}; ValueError says what is wrong."""
    declared: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in (spec or "").split(","))):
        name, _, kind = part.partition(":")
        if not DECLARED_NAME.match(name) or name in BUILTIN or kind not in DECLARED_KINDS or name in declared:
            raise ValueError(f"declared field {part!r}: write name:kind, with a name of letters, digits and _ (not a "
                             f"built-in field, each once) and a kind among {', '.join(DECLARED_KINDS)}")
        declared[name] = kind
    return declared


def check_declared(fields: dict, declared: dict[str, str]) -> None:
    """Every declared field present, of its kind (a typed column holds one value per video); else ValueError."""
    for name, kind in declared.items():
        value = fields.get(name)
        fits = {"bool": isinstance(value, bool), "text": isinstance(value, str),
                "number": isinstance(value, (int, float)) and not isinstance(value, bool)}[kind]
        if not fits or isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"field {name!r} is declared {kind} in this library: every video needs one {kind} "
                             f"value, got {value!r}")
        if kind == "number" and abs(value) > 2**53:
            raise ValueError(f"field {name!r}: {value} is beyond what a declared number column stores exactly (2**53)")
        if kind == "text" and len(value) > 1024:
            raise ValueError(f"field {name!r}: declared text values are at most 1024 characters")


def to_milvus(flt: Filter, declared: dict[str, str] | None = None) -> str:
    """A Milvus boolean expression equal to `matches`: built-ins on typed columns of their own name (`duration`
    < 0 stands for an unknown duration), declared user fields on their typed columns, other user fields on the
    `facets` JSON column."""
    return " and ".join(f"({_milvus_condition(c, declared or {})})" for c in flt.conditions)


NEVER = "video_id < 0"  # ids are positive: a condition no value can meet


def _milvus_condition(c: Condition, declared: dict[str, str]) -> str:
    values = c.value if c.op == "in" else (c.value,)
    if c.field in declared:  # one value of a known type per video: a plain comparison
        kind, column = declared[c.field], declared_column(c.field)
        if c.op in RANGE_OPS:
            return f"{column} {RANGE_OPS[c.op]} {_number(c.value)}" if kind == "number" else NEVER
        chosen = [v for v in values if _kind(v) == kind]
        if not chosen:
            return NEVER
        spell = {"text": _literal, "number": _number, "bool": lambda v: "true" if v else "false"}[kind]
        return f"{column} in [{', '.join(spell(v) for v in chosen)}]"
    if c.field not in BUILTIN:
        path = f'facets[{_literal("t")}][{_literal(c.field)}]'
        if c.op in RANGE_OPS:
            side = "hi" if c.op in ("gt", "gte") else "lo"
            return f'facets[{_literal(side)}][{_literal(c.field)}] {RANGE_OPS[c.op]} {_number(c.value)}'
        tokens = sorted({_token(v) for v in values})
        return f"json_contains_any({path}, [{', '.join(_literal(t) for t in tokens)}])"
    column = c.field
    if c.field == "title":
        strings = [v for v in values if isinstance(v, str)]
        if c.op in RANGE_OPS or not strings:
            return NEVER
        return f"{column} in [{', '.join(_literal(v) for v in strings)}]"
    known = f"{column} >= 0 and " if c.field == "duration" else ""
    if c.op in RANGE_OPS:
        return f"{known}{column} {RANGE_OPS[c.op]} {_number(c.value)}"
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if c.field == "video_id":
        numbers = [int(v) for v in numbers if float(v).is_integer()]
    if not numbers:
        return NEVER
    return f"{known}{column} in [{', '.join(_number(v) for v in numbers)}]"


def _token(value) -> str:
    """A scalar as a typed string: "b:true", "s:text", "n:<number>" (integral numbers written as integers)."""
    if isinstance(value, bool):
        return "b:true" if value else "b:false"
    if isinstance(value, str):
        return "s:" + value
    return "n:" + _number(value)


def _number(value) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return str(int(value))
    return repr(value)


def _literal(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def matches(record_fields: dict, builtin: dict, flt: Filter | None) -> bool:
    """Whether a video passes `flt` (the reference the SQL and Milvus translations are tested against)."""
    if flt is None:
        return True
    for c in flt.conditions:
        have = builtin.get(c.field) if c.field in BUILTIN else record_fields.get(c.field)
        items = have if isinstance(have, list) else [have]
        if not any(_holds(item, c) for item in items if item is not None and not isinstance(item, (dict, list))):
            return False
    return True


def _holds(item, c: Condition) -> bool:
    if c.op == "eq":
        return _same(item, c.value)
    if c.op == "in":
        return any(_same(item, v) for v in c.value)
    if isinstance(item, bool) or not isinstance(item, (int, float)):
        return False
    return {"gt": item > c.value, "gte": item >= c.value, "lt": item < c.value, "lte": item <= c.value}[c.op]


def _same(a, b) -> bool:
    """JSON equality: 1 == 1.0, but a string never equals a number and true is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    return a == b
