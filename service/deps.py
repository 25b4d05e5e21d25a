"""FastAPI dependencies: the service state and the API-key guards."""
from __future__ import annotations

import hmac
from typing import Literal
from urllib.parse import unquote

from fastapi import Cookie, Depends, Header, HTTPException, Request

from service.state import ServiceState

# The search page keeps the key in this cookie too, because <img> and <video> cannot send headers; it counts for
# reads only, so a cross-site request can never write with it.
KEY_COOKIE = "vmr_api_key"
COOKIE_DOC = "the API key (URL-encoded), for reads only: what the search page's images and player send"
KeyStatus = Literal["not_required", "missing", "accepted", "wrong"]


def get_state(request: Request) -> ServiceState:
    return request.app.state.service


def presented_key(x_api_key: str | None, authorization: str | None) -> str | None:
    if x_api_key:
        return x_api_key
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


def key_status(expected: str | None, presented: str | None) -> KeyStatus:
    if expected is None:
        return "not_required"
    if presented is None:
        return "missing"
    return "accepted" if hmac.compare_digest(presented.encode(), expected.encode()) else "wrong"


def _check_key(state: ServiceState, presented: str | None) -> None:
    status = key_status(state.config.api_key, presented)
    if status == "missing":
        raise HTTPException(401, "this endpoint needs an API key: send it as X-API-Key or Authorization: Bearer",
                            headers={"WWW-Authenticate": "Bearer"})
    if status == "wrong":
        raise HTTPException(403, "wrong API key")


def require_write_key(state: ServiceState = Depends(get_state), x_api_key: str | None = Header(None),
                      authorization: str | None = Header(None)) -> None:
    _check_key(state, presented_key(x_api_key, authorization))


def require_read_key(state: ServiceState = Depends(get_state), x_api_key: str | None = Header(None),
                     authorization: str | None = Header(None),
                     cookie_key: str | None = Cookie(None, alias=KEY_COOKIE, description=COOKIE_DOC)) -> None:
    if state.config.protect_reads:
        _check_key(state, presented_key(x_api_key, authorization) or (unquote(cookie_key) if cookie_key else None))


def check_k(state: ServiceState, k: int) -> None:
    if not 1 <= k <= state.config.max_k:
        raise HTTPException(422, f"k must be between 1 and {state.config.max_k}, got {k}")
