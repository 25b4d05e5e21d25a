"""Listing the library (GET /videos) a page at a time, with the same filters and page tokens as search."""
from __future__ import annotations

import json

from index import VideoRecord, parse_filter
from index.filters import SORT_FIELDS
from service import pages
from service.errors import Unprocessable
from service.state import ServiceState


def list_page(state: ServiceState, k: int, page_token: str | None, filters: str | None,
              sort: str) -> tuple[list[VideoRecord], int, str | None]:
    cfg = state.config
    if k > cfg.max_k:
        raise Unprocessable(f"k must be between 1 and {cfg.max_k}, got {k}")
    field = sort.lstrip("-")
    if field not in SORT_FIELDS:
        raise Unprocessable(f"sort must be one of {', '.join(SORT_FIELDS)} (a leading - for descending), got {sort!r}")
    try:
        flt = parse_filter(json.loads(filters) if filters else None)
    except (ValueError, TypeError) as err:
        raise Unprocessable(f"filters: {err}") from None
    version = state.library.version()
    digest = pages.request_digest({"list": True, "filters": flt.key() if flt else None, "sort": sort})
    offset = pages.decode(page_token, version, digest, cfg.max_page_depth * 100) if page_token else 0
    records, total = state.library.list_videos(flt, offset, k, field, sort.startswith("-"))
    more = offset + k < total
    return records, total, pages.encode(offset + k, version, digest) if more else None
