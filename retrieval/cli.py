"""How the command lines of retrieval (and of training above it) answer a user's mistake: the message alone on
stderr, exit status 2, no traceback. A mistake is one of the documented error types of the layers below (a missing
or malformed corpus, a file that is not a model) or a `UsageError`; anything else is a bug and keeps its traceback."""
from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from contextlib import contextmanager

from encoders.checkpoint import CheckpointError
from retrieval.corpora import AnnotationError, CorpusNotFound


class UsageError(ValueError):
    """A command-line input found unusable after parsing: a flag's value that does not fit the model, the data or
    the machine."""


USER_ERRORS: tuple[type[Exception], ...] = (UsageError, CorpusNotFound, AnnotationError, CheckpointError)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (argparse then reports a wrong value with exit status 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def json_object(text: str) -> dict:
    """argparse type: a JSON object."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object {{...}}, got {text!r}")
    return value


@contextmanager
def user_errors(parser: argparse.ArgumentParser, *extra: type[Exception], no_download: str = "") -> Iterator[None]:
    """Turn USER_ERRORS (and `extra`) raised inside into `prog: error: message` and exit status 2; `no_download`
    (the command that runs without downloads) follows the message of missing data."""
    try:
        yield
    except (*USER_ERRORS, *extra) as err:
        hint = f"\n  without downloads: {no_download}" if no_download and isinstance(err, CorpusNotFound) else ""
        fail(parser, f"{err}{hint}")


def fail(parser: argparse.ArgumentParser, message: str) -> None:
    """`prog: error: message` on stderr, exit status 2 (argparse's own errors also print the usage)."""
    parser.exit(2, f"{parser.prog}: error: {message}\n")
