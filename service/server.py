"""Serving the app: uvicorn on h11, plus a deadline for every request head. uvicorn closes a connection idle between
two requests (keep-alive), but waits forever on a new connection and on a head that arrives a byte at a time
(slowloris); here a request head must be complete within `header_timeout_s` of the connection opening or of its
first byte, else the connection is closed. A head is at most MAX_HEAD_BYTES (what the longest URL the API documents
needs: a query of 2,630 characters, each up to 12 bytes percent-encoded), else h11 answers 400 and closes. Bodies are
timed and bounded by the request gate (service/gate.py)."""
from __future__ import annotations

import asyncio

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from service.config import ServiceConfig

KEEP_ALIVE_S = 5  # an idle connection between two requests is closed after this
MAX_HEAD_BYTES = 64 * 1024


def head_deadline_protocol(header_timeout_s: float) -> type[H11Protocol]:
    class HeadDeadlineProtocol(H11Protocol):
        _timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._timer is None:  # the first byte of a head after a keep-alive pause
                self._arm()
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:  # the head is complete
                self._disarm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self._timer = self.loop.call_later(header_timeout_s, self._expire)

        def _disarm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _expire(self) -> None:
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

    return HeadDeadlineProtocol


def serve(app: FastAPI, config: ServiceConfig) -> None:
    uvicorn.run(app, host=config.host, port=config.port, http=head_deadline_protocol(config.header_timeout_s),
                timeout_keep_alive=KEEP_ALIVE_S, h11_max_incomplete_event_size=MAX_HEAD_BYTES, log_level="info",
                timeout_graceful_shutdown=30)
