"""FastAPI dependencies: the service state and the API-key guards."""
from __future__ import annotations

import hmac

from fastapi import Depends, Header, HTTPException, Request

from service.state import ServiceState


def get_state(request: Request) -> ServiceState:
    return request.app.state.service


def _presented_key(x_api_key: str | None, authorization: str | None) -> str | None:
    if x_api_key:
        return x_api_key
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


def _check_key(state: ServiceState, x_api_key: str | None, authorization: str | None) -> None:
    expected = state.config.api_key
    if expected is None:
        return
    presented = _presented_key(x_api_key, authorization)
    if presented is None:
        raise HTTPException(401, "this endpoint needs an API key: send it as X-API-Key or Authorization: Bearer",
                            headers={"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(presented.encode(), expected.encode()):
        raise HTTPException(403, "wrong API key")


def require_write_key(state: ServiceState = Depends(get_state), x_api_key: str | None = Header(None),
                      authorization: str | None = Header(None)) -> None:
    _check_key(state, x_api_key, authorization)


def require_read_key(state: ServiceState = Depends(get_state), x_api_key: str | None = Header(None),
                     authorization: str | None = Header(None)) -> None:
    if state.config.protect_reads:
        _check_key(state, x_api_key, authorization)


def check_k(state: ServiceState, k: int) -> None:
    if not 1 <= k <= state.config.max_k:
        raise HTTPException(422, f"k must be between 1 and {state.config.max_k}, got {k}")
