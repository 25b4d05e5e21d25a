"""Answers that are not results: each carries its HTTP status, a stable code and a message that says what went
wrong and what to do. Every one is rendered as `{"detail": message, "code": code}` by `response`."""
from __future__ import annotations

from fastapi.responses import JSONResponse

HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
              408: "timeout", 409: "duplicate", 413: "too_large", 415: "unsupported_media_type",
              422: "invalid_request", 500: "internal", 503: "overloaded"}


def response(status: int, detail: str, code: str | None = None, headers: dict | None = None) -> JSONResponse:
    """The one error shape of the API (`ErrorOut`)."""
    return JSONResponse({"detail": detail, "code": code or HTTP_CODES.get(status, "error")}, status_code=status,
                        headers=headers)


class ServiceError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        return response(self.status, self.message, self.code, self.headers)


class BadRequest(ServiceError):
    status, code = 400, "bad_request"


class Unauthorized(ServiceError):
    status, code = 401, "unauthorized"

    def __init__(self, message: str):
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(ServiceError):
    status, code = 403, "forbidden"


class NotFound(ServiceError):
    status, code = 404, "not_found"


class Timeout(ServiceError):
    status, code = 408, "timeout"


class Duplicate(ServiceError):
    """The same file (by content) is already a video of the library."""

    status, code = 409, "duplicate"


class TooLarge(ServiceError):
    status, code = 413, "too_large"


class Unsupported(ServiceError):
    status, code = 415, "unsupported_media_type"


class Unprocessable(ServiceError):
    status, code = 422, "invalid_request"


class Overloaded(ServiceError):
    """A bounded queue or a route's concurrency limit is full: retry shortly."""

    status, code = 503, "overloaded"

    def __init__(self, message: str):
        super().__init__(message, headers={"Retry-After": "1"})
