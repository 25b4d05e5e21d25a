"""Texts as the released checkpoints saw them: the official caption normalization (`pre_text`, from the official
``dataset/utils.py``) and BERT WordPiece tokenization padded to a fixed length."""
from __future__ import annotations

import os
import re
from typing import Any, Callable

import torch

from encoders.bert import load_tokenizer, resolve_text_source

Tokenize = Callable[[list[str]], tuple[torch.Tensor, torch.Tensor]]

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


def make_tokenize(tokenizer, max_len: int = 32, dynamic: bool = False) -> Tokenize:
    """texts → (input_ids, attention_mask), padded to `max_len` as the official pipeline does; `dynamic` pads only
    to the longest text of the call (still cut at `max_len`). Padding is masked out of attention, so both give the
    same vectors (within float rounding); dynamic padding spares the encoder the work on pad tokens (a query of
    ~8 tokens padded to 32 is 4x the work), the official one keeps training and evaluation batches as released."""

    def tokenize(texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise TypeError("tokenize expects a list of strings")
        out = tokenizer(list(texts), padding="longest" if dynamic else "max_length", truncation=True,
                        max_length=max_len, return_tensors="pt")
        return out["input_ids"], out["attention_mask"]

    return tokenize


def tokenizer_for(text_encoder: str, directory: str | None = None) -> Any:
    """The tokenizer saved beside a model in `directory`, else the one of its text encoder's source."""
    if directory and os.path.isfile(os.path.join(directory, "vocab.txt")):
        return load_tokenizer(directory)
    _, weights_dir = resolve_text_source(text_encoder)
    return load_tokenizer(weights_dir)
