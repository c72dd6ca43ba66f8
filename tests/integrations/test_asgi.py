"""DeadlineMiddleware with a real Starlette app, driven through httpx, on asyncio and trio.

The header is sent by hand here (the httpx transports send it in production). Virtual time:
a handler that sleeps past its deadline costs nothing.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route

import resilient_async as ra
from resilient_async.integrations.asgi import DeadlineMiddleware

pytestmark = pytest.mark.anyio

calls: list[str] = []


async def remaining(request: Request) -> PlainTextResponse:
    calls.append("remaining")
    return PlainTextResponse(repr(ra.remaining()))


async def slow(request: Request) -> PlainTextResponse:
    calls.append("slow")
    await anyio.sleep(10)
    return PlainTextResponse("too late")


async def own_deadline(request: Request) -> PlainTextResponse:
    with ra.deadline(0.1):  # the handler's own, shorter deadline: its error, not a 504
        await anyio.sleep(1)
    return PlainTextResponse("unreachable")


async def stream(request: Request) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        yield b"first chunk"
        await anyio.sleep(10)
        yield b"never"

    return StreamingResponse(body())


async def in_child_task(request: Request) -> PlainTextResponse:
    seen: list[float] = []

    async def child() -> None:
        seen.append(ra.remaining())

    async with anyio.create_task_group() as tg:
        tg.start_soon(child)
    return PlainTextResponse(repr(seen[0]))


app = Starlette(
    routes=[
        Route("/remaining", remaining),
        Route("/slow", slow),
        Route("/own-deadline", own_deadline),
        Route("/stream", stream),
        Route("/child", in_child_task),
    ]
)


def client(middleware: DeadlineMiddleware, *, raise_errors: bool = True) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=middleware, raise_app_exceptions=raise_errors)
    return httpx.AsyncClient(transport=transport, base_url="http://service")


@pytest.fixture(autouse=True)
def _clear_calls() -> None:
    calls.clear()


async def test_the_handler_sees_the_callers_remaining_time() -> None:
    async with client(DeadlineMiddleware(app)) as http:
        response = await http.get("/remaining", headers={"x-request-timeout-ms": "1500"})
        assert response.status_code == 200
        assert float(response.text) == pytest.approx(1.5)
        child = await http.get("/child", headers={"X-Request-Timeout-MS": "250"})
        assert float(child.text) == pytest.approx(0.25)


async def test_no_header_means_no_deadline_or_max_timeout() -> None:
    async with client(DeadlineMiddleware(app)) as http:
        response = await http.get("/remaining")
        assert float(response.text) == math.inf
    async with client(DeadlineMiddleware(app, max_timeout=3.0)) as http:
        response = await http.get("/remaining")
        assert float(response.text) == pytest.approx(3.0)


async def test_max_timeout_caps_what_a_caller_may_ask_for() -> None:
    capped = DeadlineMiddleware(app, max_timeout=datetime.timedelta(seconds=2))
    assert capped.max_timeout == 2.0
    async with client(capped) as http:
        asked_more = await http.get("/remaining", headers={"x-request-timeout-ms": "60000"})
        assert float(asked_more.text) == pytest.approx(2.0)
        asked_less = await http.get("/remaining", headers={"x-request-timeout-ms": "500"})
        assert float(asked_less.text) == pytest.approx(0.5)
        huge = await http.get("/remaining", headers={"x-request-timeout-ms": "9" * 40})
        assert float(huge.text) == pytest.approx(2.0)


async def test_expiry_inside_the_app_is_a_504() -> None:
    async with client(DeadlineMiddleware(app)) as http:
        start = anyio.current_time()
        response = await http.get("/slow", headers={"x-request-timeout-ms": "250"})
        assert response.status_code == 504
        assert "deadline (0.25 s) expired" in response.text
        assert anyio.current_time() - start == pytest.approx(0.25)
        expired = await http.get("/slow", headers={"x-request-timeout-ms": "0"})
        assert expired.status_code == 504
    async with client(DeadlineMiddleware(app, max_timeout=1.0)) as http:
        response = await http.get("/slow")
        assert response.status_code == 504
    assert calls == ["slow", "slow", "slow"]


@pytest.mark.parametrize("value", ["abc", "-5", "1.5", "", " ", "1e3", "١٢".encode()])
async def test_malformed_header_is_a_400_and_the_app_is_not_called(value: str | bytes) -> None:
    async with client(DeadlineMiddleware(app)) as http:
        response = await http.get("/remaining", headers={"x-request-timeout-ms": value})
    assert response.status_code == 400
    assert "x-request-timeout-ms header must be an integer number of milliseconds" in (
        response.text
    )
    assert calls == []


async def test_header_given_twice_is_a_400() -> None:
    headers = [("x-request-timeout-ms", "100"), ("x-request-timeout-ms", "200")]
    async with client(DeadlineMiddleware(app)) as http:
        response = await http.get("/remaining", headers=headers)
    assert response.status_code == 400
    assert "given 2 times" in response.text


async def test_custom_header_name() -> None:
    middleware = DeadlineMiddleware(app, header="Grpc-Timeout-Ms")
    assert middleware.header == "grpc-timeout-ms"
    async with client(middleware) as http:
        response = await http.get("/remaining", headers={"grpc-timeout-ms": "700"})
        assert float(response.text) == pytest.approx(0.7)
        ignored = await http.get("/remaining", headers={"x-request-timeout-ms": "700"})
        assert float(ignored.text) == math.inf


async def test_the_apps_own_deadline_error_is_not_turned_into_a_504() -> None:
    async with client(DeadlineMiddleware(app), raise_errors=False) as http:
        response = await http.get("/own-deadline", headers={"x-request-timeout-ms": "5000"})
    assert response.status_code == 500
    async with client(DeadlineMiddleware(app)) as http:
        with pytest.raises(ra.DeadlineExceeded):
            await http.get("/own-deadline", headers={"x-request-timeout-ms": "5000"})


async def test_expiry_after_the_response_started_propagates() -> None:
    async with client(DeadlineMiddleware(app)) as http:
        with pytest.raises(ra.DeadlineExceeded):
            await http.get("/stream", headers={"x-request-timeout-ms": "100"})


async def test_other_scopes_pass_through() -> None:
    seen: list[dict[str, Any]] = []

    async def recording_app(scope: Any, receive: Any, send: Any) -> None:
        seen.append({"type": scope["type"], "remaining": ra.remaining()})

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(message: Any) -> None:
        return None

    await DeadlineMiddleware(recording_app, max_timeout=1.0)({"type": "lifespan"}, receive, send)
    assert seen == [{"type": "lifespan", "remaining": math.inf}]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"max_timeout": 0}, ValueError, "max_timeout must be a finite number > 0, got 0"),
        ({"max_timeout": -1.0}, ValueError, "max_timeout must be a finite number > 0"),
        ({"max_timeout": math.nan}, ValueError, "max_timeout must be a finite number > 0"),
        ({"max_timeout": "5"}, TypeError, "max_timeout must be a number"),
        ({"header": ""}, ValueError, "header must be a non-empty name without whitespace"),
        ({"header": "x timeout"}, ValueError, "header must be a non-empty name"),
        ({"header": b"x-timeout"}, TypeError, "header must be a str"),
    ],
)
def test_bad_configuration_fails_at_construction(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        DeadlineMiddleware(app, **kwargs)


def test_app_must_be_callable() -> None:
    with pytest.raises(TypeError, match="app must be an ASGI application"):
        DeadlineMiddleware("not an app")  # type: ignore[arg-type]


# --- end to end: the client's transport sends the deadline, the server's middleware applies it


async def test_a_deadline_crosses_from_the_client_transport_to_the_app() -> None:
    from resilient_async.integrations.httpx import AsyncResilientTransport

    server = httpx.ASGITransport(app=DeadlineMiddleware(app))
    transport = AsyncResilientTransport(ra.Retry(attempts=2), transport=server)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        with ra.deadline(2.5):
            await anyio.sleep(1)
            seen = float((await http.get("/remaining")).text)
        assert 0 < seen <= 1.5  # the app ran under what the caller had left, not more
        no_deadline = float((await http.get("/remaining")).text)
        assert no_deadline == math.inf
    assert calls == ["remaining", "remaining"]
