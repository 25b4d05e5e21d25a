"""Page tokens: where the next page starts, valid only for the same request on the same library version.

A token is URL-safe base64 of {offset, library version, a digest of the request}, with a checksum; anything that
does not decode is malformed, a token for another request or for a library that changed since is stale. Both get
a 400 that says which and what to do.
"""
from __future__ import annotations

import base64
import hashlib
import json
import zlib

from service.errors import BadRequest


class StalePageToken(BadRequest):
    code = "stale_page_token"


def request_digest(parts: dict) -> str:
    """What a token is bound to: everything that decides the ranking (not k, not the token itself)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def encode(offset: int, version: int, digest: str) -> str:
    body = json.dumps([offset, version, digest], separators=(",", ":")).encode()
    crc = zlib.crc32(body).to_bytes(4, "big")
    return base64.urlsafe_b64encode(crc + body).decode().rstrip("=")


def decode(token: str, version: int, digest: str, max_offset: int) -> int:
    """The offset a token points at; BadRequest when it is malformed, StalePageToken when it no longer applies."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        crc, body = raw[:4], raw[4:]
        if zlib.crc32(body).to_bytes(4, "big") != crc:
            raise ValueError("checksum")
        offset, token_version, token_digest = json.loads(body)
        if not (isinstance(offset, int) and isinstance(token_version, int) and isinstance(token_digest, str)):
            raise ValueError("fields")
    except (ValueError, TypeError, UnicodeDecodeError) as err:
        raise BadRequest(f"page_token is malformed ({err}); send back next_page_token exactly as received") from None
    if token_digest != digest:
        raise StalePageToken("page_token belongs to another request; send it with the same query, filters, sort, "
                             "mode and grouping as the page it came from")
    if token_version != version:
        raise StalePageToken("page_token is stale: the library changed since the first page; search again from "
                             "the first page")
    if not 0 < offset <= max_offset:
        raise BadRequest(f"page_token points past the deepest page (offset {max_offset}); narrow the search")
    return offset
