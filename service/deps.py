"""FastAPI dependencies: the service state and the API-key guards. A route declares its guard here; the request gate
(service/gate.py) applies the same check before the body is read, the dependency again before the handler runs."""
from __future__ import annotations

import hmac

from fastapi import Depends, Header, HTTPException, Request

from service.config import ServiceConfig
from service.errors import Forbidden, ServiceError, Unauthorized
from service.state import ServiceState


def get_state(request: Request) -> ServiceState:
    return request.app.state.service


def key_refusal(config: ServiceConfig, x_api_key: str | None, authorization: str | None) -> ServiceError | None:
    """Why a request may not go on without the configured key (None: it may). The key is compared as sent: nothing
    is stripped, and a configured key has no spaces (service.config), so a blank or padded one never matches."""
    if config.api_key is None:
        return None
    presented = x_api_key
    if presented is None and authorization is not None and authorization[:7].lower() == "bearer ":
        presented = authorization[7:]
    if presented is None:
        return Unauthorized("this endpoint needs an API key: send it as X-API-Key or Authorization: Bearer")
    if not hmac.compare_digest(presented.encode(), config.api_key.encode()):
        return Forbidden("wrong API key")
    return None


def key_header():  # a parameter's own Header (FastAPI sets each one's alias from its parameter name)
    return Header(None, max_length=1024)


def require_write_key(state: ServiceState = Depends(get_state), x_api_key: str | None = key_header(),
                      authorization: str | None = key_header()) -> None:
    if refusal := key_refusal(state.config, x_api_key, authorization):
        raise refusal


def require_read_key(state: ServiceState = Depends(get_state), x_api_key: str | None = key_header(),
                     authorization: str | None = key_header()) -> None:
    if state.config.protect_reads and (refusal := key_refusal(state.config, x_api_key, authorization)):
        raise refusal


def check_k(state: ServiceState, k: int) -> None:
    if not 1 <= k <= state.config.max_k:
        raise HTTPException(422, f"k must be between 1 and {state.config.max_k}, got {k}")
