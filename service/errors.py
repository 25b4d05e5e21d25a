"""Answers that are not results: each carries its HTTP status, a stable code and a message that says what went
wrong and what to do. The app renders every one as `{"detail": message, "code": code}`."""
from __future__ import annotations


class ServiceError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class BadRequest(ServiceError):
    status, code = 400, "bad_request"


class Forbidden(ServiceError):
    status, code = 403, "forbidden"


class NotFound(ServiceError):
    status, code = 404, "not_found"


class TooLarge(ServiceError):
    status, code = 413, "too_large"


class Unprocessable(ServiceError):
    status, code = 422, "invalid_request"


class Overloaded(ServiceError):
    """A bounded queue (the encoder's or the ingestion jobs') is full: retry shortly."""

    status, code = 503, "overloaded"

    def __init__(self, message: str):
        super().__init__(message, headers={"Retry-After": "1"})
