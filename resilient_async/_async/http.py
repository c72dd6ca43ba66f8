"""httpx transports that send each request through a policy: `AsyncResilientTransport`.

The transport wraps another one (`httpx.AsyncHTTPTransport` by default). Each request is one
`policy.call` of a send: a response whose status is in `retry_statuses` is turned into a
failure for the policy (an `httpx.HTTPStatusError`, so the HTTP classification rules and
the server's Retry-After apply), with its body read first so that, when the policy gives
up, that response goes back to the caller whole. A request that must not be sent twice (a
method outside `methods`, a streamed body) runs with `NO_RETRY` set: it passes every guard
once and is never retried.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import httpx
from httpx._multipart import FileField, MultipartStream  # no public name; stable since 0.18

from .._core.deadlines import effective_deadline
from .._core.http import (
    DEADLINE_HEADER,
    DEFAULT_METHODS,
    DEFAULT_RETRY_STATUSES,
    check_header,
    check_methods,
    check_statuses,
    timeout_ms,
)
from .._core.no_retry import NO_RETRY
from . import _backend
from .policy import Policy

__all__ = ["AsyncResilientTransport"]

_FLAVOUR = "resilient_async"  # unasync: remove
# unasync: sync-only: _FLAVOUR = "resilient_async.sync"


class AsyncResilientTransport(httpx.AsyncBaseTransport):
    """An httpx transport that sends each request through a policy.

    Give it to a client: `httpx.AsyncClient(transport=AsyncResilientTransport(policy))`.

    - A response whose status is in `retry_statuses` is a failure for the policy, classified
      by the HTTP rules (429 and a 503 with Retry-After are THROTTLED, other 5xx TRANSIENT);
      a `Retry` honours its Retry-After. When the policy gives up on such a status, the last
      response is returned as an ordinary response, body intact. The responses of attempts
      that are retried are read and closed. Other statuses return at once.
    - Transport errors (`httpx.ConnectError`, `httpx.ReadTimeout`, ...) are failures for the
      policy and propagate unchanged when it gives up.
    - A request whose method is not in `methods`, or whose body is a stream (it cannot be
      sent twice), passes through the policy's guards but is never retried nor hedged.
    - Rejections by the policy's guards (`CircuitOpenError`, `BulkheadFullError`, ...)
      propagate, and the request is not sent.
    - With `propagate_deadline`, each attempt carries the time left under the effective
      deadline as a header (`x-request-timeout-ms`, whole milliseconds), so the next service
      can stop when the caller stops waiting. Without a deadline no header is added.

    Args:
        policy: The policy each request runs through (`Retry`, `CircuitBreaker`, a
            `pipeline(...)`, ...).
        transport: The transport that sends; `httpx.AsyncHTTPTransport()` when omitted.
        retry_statuses: The status codes that count as failures, codes in 100-599.
        methods: The methods that may be retried; others are sent once.
        propagate_deadline: Whether to send the deadline header.
        deadline_header: The header's name.

    Raises:
        TypeError: `policy` is not a policy of this flavour, `transport` not a transport of
            this flavour, or an argument has the wrong type.
        ValueError: A status code outside 100-599, an unknown method, or a bad header name.

    Example:
        ```python
        policy = pipeline(Retry(attempts=4), CircuitBreaker("search"), Timeout(2.0))
        client = httpx.AsyncClient(transport=AsyncResilientTransport(policy))
        ```
    """

    def __init__(
        self,
        policy: Policy,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        retry_statuses: Iterable[int] = DEFAULT_RETRY_STATUSES,
        methods: Iterable[str] = DEFAULT_METHODS,
        propagate_deadline: bool = True,
        deadline_header: str = DEADLINE_HEADER,
    ) -> None:
        if not isinstance(policy, Policy):
            raise TypeError(
                f"policy must be a {_FLAVOUR} policy (Retry, CircuitBreaker, pipeline(...), "
                f"...), got {policy!r}"
            )
        if transport is None:
            transport = httpx.AsyncHTTPTransport()
        elif not isinstance(transport, httpx.AsyncBaseTransport):
            raise TypeError(
                f"transport must be an httpx.AsyncBaseTransport or None, got {transport!r}"
            )
        if not isinstance(propagate_deadline, bool):
            raise TypeError(f"propagate_deadline must be a bool, got {propagate_deadline!r}")
        self.policy = policy
        self.transport = transport
        self.retry_statuses = check_statuses(retry_statuses)
        self.methods = check_methods(methods)
        header = check_header(deadline_header)
        self.deadline_header = header if propagate_deadline else None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.policy!r}, transport={self.transport!r}, "
            f"retry_statuses={sorted(self.retry_statuses)}, methods={sorted(self.methods)}, "
            f"deadline_header={self.deadline_header!r})"
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request` through the policy; return the response to give the caller.

        Raises:
            httpx.TransportError: The last attempt's transport error, unchanged.
            ResilienceError: A guard rejected the request (`CircuitOpenError`, ...), or a
                deadline expired (`DeadlineExceeded`).
        """
        repeatable = request.method in self.methods and _replayable(request.stream)
        token = NO_RETRY.set(not repeatable)
        try:
            response = await self.policy.call(self._send, request)
        except _FailedStatus as failure:
            return failure.response  # the policy gave up on a retry status
        finally:
            NO_RETRY.reset(token)
        if not isinstance(response, httpx.Response):
            raise TypeError(
                f"the policy returned {response!r} instead of an httpx.Response (a Fallback "
                "in a transport's policy must provide a Response)"
            )
        return response

    async def aclose(self) -> None:
        """Close the wrapped transport."""
        await self.transport.aclose()

    async def _send(self, request: httpx.Request) -> httpx.Response:
        """One attempt: send, and raise `_FailedStatus` for a status the policy must see."""
        header = self.deadline_header
        if header is not None:
            deadline = effective_deadline()
            if deadline != math.inf:
                left = _backend.remaining_until(deadline)
                request.headers[header] = str(timeout_ms(left))
        response = await self.transport.handle_async_request(request)
        if response.status_code not in self.retry_statuses:
            return response
        if response.is_stream_consumed:
            raise _FailedStatus(request, response)  # read already: its body is in memory
        body = bytearray()
        try:
            async for chunk in response.aiter_raw():
                body += chunk
        finally:
            await response.aclose()
        extensions = {k: v for k, v in response.extensions.items() if k != "network_stream"}
        buffered = httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=httpx.ByteStream(bytes(body)),
            extensions=extensions,
            request=request,
        )
        raise _FailedStatus(request, buffered)


class _FailedStatus(httpx.HTTPStatusError):
    """A response whose status is a failure for the policy, its body read and kept."""

    def __init__(self, request: httpx.Request, response: httpx.Response) -> None:
        reason = response.reason_phrase
        super().__init__(
            f"{response.status_code} {reason} from {request.method} {request.url}",
            request=request,
            response=response,
        )


def _replayable(stream: object) -> bool:
    """Tell whether a request body can be sent again exactly as it was sent the first time.

    Bytes, text, JSON and form bodies are held in memory. A multipart body (`files=`) is
    read again from the start when each file is in memory or seekable (httpx seeks it back
    to 0). Any other body is a stream that can be read once.
    """
    if isinstance(stream, httpx.ByteStream):
        return True
    if isinstance(stream, MultipartStream):
        return all(_rewindable(field) for field in stream.fields if isinstance(field, FileField))
    return False


def _rewindable(field: FileField) -> bool:
    file = field.file
    if isinstance(file, str | bytes):
        return True
    seekable = getattr(file, "seekable", None)
    return callable(seekable) and bool(seekable())
