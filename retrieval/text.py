"""Caption normalization exactly as the official ``pre_text`` (``dataset/utils.py``), so texts are tokenized
the way the released checkpoints saw them."""
from __future__ import annotations

import re

_DELETE = re.compile(r"[,.'!?\"()*#:;~]")
_TO_SPACE = re.compile(r"[-/]")
_SPACES = re.compile(r"\s{2,}")


def pre_text(text: str, max_words: int | None = None) -> str:
    """Lowercase; drop ``,.'!?"()*#:;~``; ``-`` and ``/`` become spaces; ``<person>`` becomes ``person``;
    runs of 2+ whitespace become one space; strip; optionally keep the first ``max_words`` words."""
    if not isinstance(text, str):
        raise TypeError(f"caption must be a str, got {type(text).__name__}")
    text = _DELETE.sub("", text.lower())
    text = _TO_SPACE.sub(" ", text).replace("<person>", "person")
    text = _SPACES.sub(" ", text).rstrip("\n").strip(" ")
    if max_words:
        text = " ".join(text.split(" ")[:max_words])
    return text
