"""FastAPI dependencies: the service state and the API-key guards. A route declares its guard here; the request gate
(service/gate.py) applies the same check before the body is read, the dependency again before the handler runs."""
from __future__ import annotations

import hmac
from typing import Literal
from urllib.parse import unquote

from fastapi import Cookie, Depends, Header, HTTPException, Request

from service.config import ServiceConfig
from service.errors import Forbidden, ServiceError, Unauthorized
from service.state import ServiceState

# The search page keeps the key in this cookie too, because <img> and <video> cannot send headers; it counts for
# reads only, so a cross-site request can never write with it.
KEY_COOKIE = "vmr_api_key"
COOKIE_DOC = "the API key (URL-encoded), for reads only: what the search page's images and player send"
KeyStatus = Literal["not_required", "missing", "accepted", "wrong"]


def get_state(request: Request) -> ServiceState:
    return request.app.state.service


def presented_key(x_api_key: str | None, authorization: str | None, cookie: str | None = None) -> str | None:
    """The key as sent: X-API-Key, else Authorization: Bearer, else (reads only) the page's cookie. Nothing is
    stripped, and a configured key has no spaces (service.config), so a blank or padded one never matches."""
    if x_api_key is not None:
        return x_api_key
    if authorization is not None and authorization[:7].lower() == "bearer ":
        return authorization[7:]
    return unquote(cookie) if cookie else None


def key_status(expected: str | None, presented: str | None) -> KeyStatus:
    if expected is None:
        return "not_required"
    if presented is None:
        return "missing"
    return "accepted" if hmac.compare_digest(presented.encode(), expected.encode()) else "wrong"


def key_refusal(config: ServiceConfig, presented: str | None) -> ServiceError | None:
    """Why a request may not go on without the configured key (None: it may)."""
    status = key_status(config.api_key, presented)
    if status == "missing":
        return Unauthorized("this endpoint needs an API key: send it as X-API-Key or Authorization: Bearer")
    if status == "wrong":
        return Forbidden("wrong API key")
    return None


def key_header():  # a parameter's own Header (FastAPI sets each one's alias from its parameter name)
    return Header(None, max_length=1024)


def require_write_key(state: ServiceState = Depends(get_state), x_api_key: str | None = key_header(),
                      authorization: str | None = key_header()) -> None:
    if refusal := key_refusal(state.config, presented_key(x_api_key, authorization)):
        raise refusal


def require_read_key(state: ServiceState = Depends(get_state), x_api_key: str | None = key_header(),
                     authorization: str | None = key_header(),
                     cookie_key: str | None = Cookie(None, alias=KEY_COOKIE, max_length=1024,
                                                     description=COOKIE_DOC)) -> None:
    if state.config.protect_reads and \
            (refusal := key_refusal(state.config, presented_key(x_api_key, authorization, cookie_key))):
        raise refusal


def check_k(state: ServiceState, k: int) -> None:
    if not 1 <= k <= state.config.max_k:
        raise HTTPException(422, f"k must be between 1 and {state.config.max_k}, got {k}")
