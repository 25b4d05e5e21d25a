"""What a library holds and answers with, whatever backend stores it: videos with time segments, captions, hits.

`check_fields` is the one rule for user fields: only what can be served back is stored (a JSON object that
round-trips, bounded in size and depth), so a write can never break later reads.
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field

import numpy as np

MAX_FIELDS_BYTES = 64 * 1024
MAX_FIELDS_DEPTH = 8
MAX_FIELD_KEY_CHARS = 128
MAX_TITLE_CHARS = 512
MAX_QUERY_WORDS = 32
WORD = re.compile(r"\w+", re.UNICODE)


@dataclass
class Segment:
    id: int
    start: float
    end: float


@dataclass
class VideoRecord:
    id: int
    path: str
    duration: float | None
    title: str = ""
    fields: dict = field(default_factory=dict)
    created: float = 0.0  # ingest time, seconds since the epoch
    content_hash: str | None = None
    segments: list[Segment] = field(default_factory=list)


@dataclass
class NewVideo:
    """A video to store: its windows `spans` [(start, end), ...] in time order with one vector each."""

    path: str
    duration: float | None
    spans: list[tuple[float, float]]
    vectors: np.ndarray
    fields: dict | None = None
    title: str = ""
    video_id: int | None = None  # replace this existing video (upsert)
    content_hash: str | None = None


@dataclass
class VideoHit:
    """A video with the score and time span of its best-matching segment."""

    video: VideoRecord
    score: float
    segment_id: int
    start: float
    end: float


@dataclass
class TextRecord:
    id: int
    text: str
    fields: dict = field(default_factory=dict)


@dataclass
class TextHit:
    text: TextRecord
    score: float


def normalize(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def check_fields(fields: dict | None) -> dict:
    """`fields` if it is a JSON object that serializes back to itself within the bounds, else ValueError."""
    if fields is None:
        return {}
    if not isinstance(fields, dict):
        raise ValueError(f"fields must be a JSON object, got {type(fields).__name__}")
    _check_value(fields, 1, "fields")
    try:
        text = json.dumps(fields, ensure_ascii=False, allow_nan=False)
        encoded = text.encode("utf-8")
    except (ValueError, UnicodeEncodeError) as err:
        raise ValueError(f"fields cannot be stored: {err}") from None
    if len(encoded) > MAX_FIELDS_BYTES:
        raise ValueError(f"fields take {len(encoded)} bytes as JSON; the limit is {MAX_FIELDS_BYTES}")
    return fields


def check_title(title: str) -> str:
    """`title` (or a caption) if it is a string that can be stored and served back, else ValueError."""
    if not isinstance(title, str) or len(title) > MAX_TITLE_CHARS:
        raise ValueError(f"a title or text is a string of at most {MAX_TITLE_CHARS} characters")
    try:
        title.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueError(f"a title or text cannot be stored: {err}") from None
    return title


def _check_value(value, depth: int, where: str) -> None:
    if depth > MAX_FIELDS_DEPTH:
        raise ValueError(f"{where} is nested deeper than {MAX_FIELDS_DEPTH} levels")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or not key or len(key) > MAX_FIELD_KEY_CHARS:
                raise ValueError(f"{where} has a key that is not a string of 1 to {MAX_FIELD_KEY_CHARS} characters")
            _check_value(item, depth + 1, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_value(item, depth + 1, f"{where}[{i}]")
    elif isinstance(value, bool) or value is None or isinstance(value, str):
        return
    elif isinstance(value, int):
        if abs(value) >= 2**63:
            raise ValueError(f"{where} is an integer outside the 64-bit range")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where} is not a finite number")
    else:
        raise ValueError(f"{where} has a value of type {type(value).__name__}, not a JSON value")


def keyword_text(path: str, fields: dict) -> str:
    """What keyword search reads besides the title: the file name and every string among the user fields."""
    found = [os.path.splitext(os.path.basename(path))[0].replace("_", " ").replace("-", " ")]

    def collect(value) -> None:
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, dict):
            for item in value.values():
                collect(item)
        elif isinstance(value, list):
            for item in value:
                collect(item)

    collect(fields)
    return " ".join(found)


def query_words(text: str) -> list[str]:
    """The words a keyword search looks for (lower case, at most MAX_QUERY_WORDS)."""
    return WORD.findall(text.lower())[:MAX_QUERY_WORDS]
