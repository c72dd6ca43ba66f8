"""Run each ASGI request under the deadline its caller sent.

A service that calls another one over HTTP can send the time it has left (the httpx
transports do, as `x-request-timeout-ms`). `DeadlineMiddleware` is the receiving side: it
reads that header and runs the request under `resilient_async.deadline(...)`, so that the
handler's own calls (retries, waits, further HTTP calls that send the header on) stop when
the original caller stops waiting, instead of working for an answer nobody will read.

Plain ASGI, no framework import: it wraps any ASGI 3 application (Starlette, FastAPI, Quart,
Litestar, Django's ASGI handler...) and runs on asyncio and trio.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

from .._async.timeout import deadline
from .._core.checks import check_positive
from ..errors import DeadlineExceeded

__all__ = ["DeadlineMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_TEXT: Final = [(b"content-type", b"text/plain; charset=utf-8")]


class DeadlineMiddleware:
    """Run each HTTP request under the deadline given by a header, in integer milliseconds.

    - With the header, the request runs under `deadline(min(header, max_timeout))`:
      `resilient_async.remaining()` inside the handler tells how much is left, and every
      policy under it respects it.
    - Without the header, the request runs under `max_timeout` when one is given (it bounds
      every request, asked for or not), and under no deadline otherwise.
    - When the deadline expires inside the app, the app is cancelled and the client gets a
      504. If the app had already started its response, a 504 can no longer be sent: the
      `DeadlineExceeded` then propagates to the server, which aborts the response.
    - A malformed header (not a non-negative integer, or given twice) gets a 400 and the app
      is not called.

    Other scope types (websocket, lifespan) pass through untouched. A `DeadlineExceeded`
    that the app raises from a deadline of its own is the app's error, and propagates.

    Args:
        app: The ASGI application to wrap.
        header: The request header to read (case-insensitive).
        max_timeout: The longest deadline, in seconds > 0 (or a `timedelta`), a caller may
            ask for; also the deadline of requests without the header. None: no cap.

    Raises:
        ValueError: `max_timeout` is not > 0, or `header` is empty or has whitespace.
        TypeError: An argument has the wrong type.

    Example:
        >>> from starlette.applications import Starlette
        >>> app = DeadlineMiddleware(Starlette(routes=routes), max_timeout=10.0)
    """

    __slots__ = ("_header", "app", "header", "max_timeout")

    def __init__(
        self,
        app: ASGIApp,
        *,
        header: str = "x-request-timeout-ms",
        max_timeout: float | datetime.timedelta | None = None,
    ) -> None:
        if not callable(app):
            raise TypeError(f"app must be an ASGI application (a callable), got {app!r}")
        if not isinstance(header, str):
            raise TypeError(f"header must be a str, got {header!r}")
        if not header or header != "".join(header.split()):
            raise ValueError(f"header must be a non-empty name without whitespace, got {header!r}")
        if isinstance(max_timeout, datetime.timedelta):
            max_timeout = max_timeout.total_seconds()
        self.app = app
        self.header = header.lower()
        self.max_timeout = (
            None if max_timeout is None else check_positive(max_timeout, "max_timeout")
        )
        self._header = self.header.encode("latin-1")

    def __repr__(self) -> str:
        return (
            f"DeadlineMiddleware({self.app!r}, header={self.header!r}, "
            f"max_timeout={self.max_timeout!r})"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            timeout = self._timeout(scope)
        except ValueError as exc:
            await _respond(send, 400, str(exc))
            return
        if timeout is None:
            await self.app(scope, receive, send)
            return
        started = False

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        bound = deadline(timeout)
        try:
            with bound:
                await self.app(scope, receive, watched_send)
        except DeadlineExceeded:
            if not bound.expired or started:
                raise
            await _respond(send, 504, f"the request's deadline ({timeout:g} s) expired")

    def _timeout(self, scope: Scope) -> float | None:
        """The request's deadline in seconds, None for none; ValueError for a bad header."""
        values = [value for name, value in scope["headers"] if name.lower() == self._header]
        cap = self.max_timeout
        if not values:
            return cap
        if len(values) > 1:
            raise ValueError(f"the {self.header} header was given {len(values)} times")
        text = values[0].decode("latin-1").strip()
        if not text.isascii() or not text.isdigit():
            raise ValueError(
                f"the {self.header} header must be an integer number of milliseconds >= 0, "
                f"got {text!r}"
            )
        # Beyond 15 digits (31,000 years) a float would overflow or lose the point.
        seconds = int(text) / 1000 if len(text) <= 15 else math.inf
        if cap is not None:
            seconds = min(seconds, cap)
        return seconds if seconds < math.inf else None


async def _respond(send: Send, status: int, text: str) -> None:
    body = text.encode()
    headers = [*_TEXT, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
