"""What every request passes before the app reads a byte of its body (a pure ASGI middleware, so it holds for every
transfer encoding, chunked included): the API key its route declares (service/deps.py), how many requests of its
kind already run on that route, how large its body may be and how slowly it may arrive. Every answer is counted for
/metrics, by route template and by a method from a fixed set (a label never grows with what clients send)."""
from __future__ import annotations

import asyncio
import time

from fastapi.routing import APIRoute
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.deps import KEY_COOKIE, key_refusal, presented_key, require_read_key, require_write_key
from service.errors import Overloaded, ServiceError, Timeout, TooLarge
from service.state import ServiceState

MULTIPART_OVERHEAD = 64 * 1024  # boundaries and form fields around an upload
MIN_BODY_RATE = 16 * 1024  # bytes a second: each one received extends a body's deadline by 1 / this
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
CLOSE = {"Connection": "close"}  # a refused request's unread body is not waited for


def _guard(route: BaseRoute) -> str:
    """'write', 'read' or 'open': the strongest key guard among a route's dependencies."""
    calls, todo = set(), [route.dependant] if isinstance(route, APIRoute) else []
    while todo:
        dependant = todo.pop()
        calls.add(dependant.call)
        todo.extend(dependant.dependencies)
    return "write" if require_write_key in calls else "read" if require_read_key in calls else "open"


def _resolve(routes: list[BaseRoute], scope: Scope) -> BaseRoute | None:
    """The route that will answer `scope`, looked up as the router will (an included router is searched inside:
    recent FastAPI keeps it whole instead of copying its routes into the app's)."""
    for route in routes:
        if route.matches(scope)[0] == Match.FULL:
            inner = getattr(route, "original_router", None)
            return _resolve(inner.routes, scope) if inner is not None else route
    return None


def _cookie(header: str, name: str) -> str | None:
    """One cookie's value from a Cookie header (the search page's key, for reads)."""
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


class RequestGate:
    def __init__(self, app: ASGIApp, routes: list[BaseRoute], state: ServiceState):
        self.app, self.routes, self.state = app, routes, state
        self.running: dict[str, int] = {}
        self._guards: dict[int, str] = {}

    def _admit(self, route: BaseRoute | None, headers: Headers, key: str, upload: bool) -> None:
        """Refuse (raise) what can be refused from the request head alone."""
        cfg = self.state.config
        if route is not None:
            guard = self._guards.setdefault(id(route), _guard(route))
            if guard == "write" or (guard == "read" and cfg.protect_reads):
                cookie = _cookie(headers.get("cookie", ""), KEY_COOKIE) if guard == "read" else None
                presented = presented_key(headers.get("x-api-key"), headers.get("authorization"), cookie)
                if refusal := key_refusal(cfg, presented):
                    raise refusal
        length = headers.get("content-length", "")
        limit = self._body_limit(upload)
        if length.isdigit() and int(length) > limit:
            raise TooLarge(f"request body of {length} bytes is larger than the limit of {limit} bytes")
        allowed = cfg.max_concurrent_uploads if upload else cfg.max_concurrent_requests
        if self.running.get(key, 0) >= allowed:
            raise Overloaded(f"{allowed} {'uploads' if upload else 'requests'} to this route are already running; "
                             "retry shortly")

    def _body_limit(self, upload: bool) -> int:
        cfg = self.state.config
        return cfg.max_upload_bytes + MULTIPART_OVERHEAD if upload else cfg.max_json_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        headers = Headers(scope=scope)
        route = _resolve(self.routes, scope)
        label = getattr(route, "path", "unmatched")
        upload = headers.get("content-type", "").lower().startswith("multipart/")
        key = f"{label} upload" if upload else label
        passage = _Passage(scope, receive, send, self._body_limit(upload), self.state.config.body_timeout_s)
        try:
            self._admit(route, headers, key, upload)
        except ServiceError as err:
            if err.status == 503:
                self.state.metrics.overloaded.inc()
            await passage.refuse(err)
            self._count(label, scope["method"], passage.status, started)
            return
        self.running[key] = self.running.get(key, 0) + 1
        try:
            await self.app(scope, passage.receive, passage.send)
        except ClientDisconnect:
            if not passage.cut:  # the client left; when the gate cut the body, it already answered
                raise
        finally:
            self.running[key] -= 1
            self._count(label, scope["method"], passage.status, started)

    def _count(self, label: str, method: str, status: int, started: float) -> None:
        metrics = self.state.metrics
        metrics.requests.labels(label, method if method in METHODS else "other", str(status)).inc()
        metrics.latency.labels(label).observe(time.perf_counter() - started)


class _Passage:
    """One request on its way through the gate: its body counted and timed as the app reads it, and the gate's own
    answer when it refuses (after which the app reads a disconnect and what it still sends is dropped)."""

    def __init__(self, scope: Scope, receive: Receive, send: Send, limit: int, timeout_s: float):
        self.scope, self._receive, self._send, self.limit = scope, receive, send, limit
        self.deadline = time.monotonic() + timeout_s
        self.received, self.body_done = 0, False
        self.status, self.started, self.cut = 500, False, False  # 500 until the app says otherwise

    async def send(self, message: Message) -> None:
        if self.cut:
            return
        if message["type"] == "http.response.start":
            self.status, self.started = message["status"], True
        await self._send(message)

    async def refuse(self, err: ServiceError) -> None:
        if not self.started:
            response = err.response()
            response.headers.update(CLOSE)
            await response(self.scope, self._receive, self.send)
        self.cut = True

    async def receive(self) -> Message:
        if self.cut:
            return {"type": "http.disconnect"}
        if self.body_done:
            return await self._receive()
        try:
            message = await asyncio.wait_for(self._receive(), max(0.0, self.deadline - time.monotonic()))
        except asyncio.TimeoutError:
            await self.refuse(Timeout(f"the request body did not arrive in time ({self.received} bytes received)"))
            return {"type": "http.disconnect"}
        if message["type"] == "http.request":
            chunk = len(message.get("body", b""))
            self.received += chunk
            self.deadline += chunk / MIN_BODY_RATE
            self.body_done = not message.get("more_body", False)
            if self.received > self.limit:
                await self.refuse(TooLarge(f"request body is larger than the limit of {self.limit} bytes"))
                return {"type": "http.disconnect"}
        return message
