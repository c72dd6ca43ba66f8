"""The httpx transports against a real HTTP server on 127.0.0.1 (no mock of httpx)."""

from __future__ import annotations

import gzip
import io
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator

import anyio
import httpx
import pytest

import resilient_async as ra
import resilient_async.sync as ra_sync
from resilient_async import backoff
from resilient_async.instrumentation import hooks
from resilient_async.integrations.httpx import AsyncResilientTransport, ResilientTransport
from resilient_async.testing import set_testing

from ..helpers import Recorder
from ..http_server import Reply, ScriptedServer, refused_url, serving

pytestmark = pytest.mark.real_time


@pytest.fixture(scope="module")
def server() -> Iterator[ScriptedServer]:
    with serving() as scripted:
        yield scripted


def client(policy: ra.Retry | object, **options: object) -> httpx.AsyncClient:
    transport = AsyncResilientTransport(policy, **options)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport)


def quick_retry(attempts: int = 3) -> ra.Retry:
    return ra.Retry(attempts=attempts, backoff=backoff.constant(0))


@pytest.mark.anyio
async def test_503_with_retry_after_is_retried_after_the_hint(server: ScriptedServer) -> None:
    url = server.script(Reply(503, b"busy", {"Retry-After": "1"}), Reply(200, b"ok"))
    recorder = Recorder()
    started = time.monotonic()
    with hooks(recorder):
        async with client(quick_retry()) as http:
            response = await http.get(url)
    assert (response.status_code, response.text) == (200, "ok")
    assert time.monotonic() - started >= 1.0  # the server's hint, not the zero backoff
    (scheduled,) = recorder.of("retry.scheduled")
    assert scheduled.delay >= 1.0
    assert isinstance(scheduled.exception, httpx.HTTPStatusError)
    assert ra.classify(scheduled.exception) is ra.ErrorClass.THROTTLED
    assert len(server.received(url)) == 2


@pytest.mark.anyio
async def test_502_until_the_policy_gives_up_returns_the_last_response_whole(
    server: ScriptedServer,
) -> None:
    url = server.script(Reply(502, b"first"), Reply(502, b"second"), Reply(502, b"last one"))
    recorder = Recorder()
    with set_testing(True), hooks(recorder):
        async with client(quick_retry(3)) as http:
            response = await http.get(url)
    assert (response.status_code, response.text) == (502, "last one")
    assert response.headers["content-length"] == "8"
    assert response.elapsed.total_seconds() >= 0  # an ordinary, closed response
    (gave_up,) = recorder.of("retry.gave_up")
    assert gave_up.stop_reason == "attempts"
    received = server.received(url)
    assert len(received) == 3
    # Each retried response was read and closed, so its connection went back to the pool.
    assert len({r.client_port for r in received}) == 1


@pytest.mark.anyio
async def test_a_streamed_response_of_a_given_up_status_still_reads(
    server: ScriptedServer,
) -> None:
    url = server.script(Reply(503, b"x" * 100_000))
    async with client(quick_retry(1)) as http, http.stream("GET", url) as response:
        body = b"".join([chunk async for chunk in response.aiter_bytes()])
    assert response.status_code == 503
    assert body == b"x" * 100_000


@pytest.mark.anyio
async def test_a_compressed_body_given_up_on_is_decoded_once(server: ScriptedServer) -> None:
    body = gzip.compress(b"overloaded, try later")
    url = server.script(Reply(503, body, {"Content-Encoding": "gzip"}))
    with set_testing(True):
        async with client(quick_retry(2)) as http:
            response = await http.get(url)
    assert (response.status_code, response.text) == (503, "overloaded, try later")
    assert len(server.received(url)) == 2


@pytest.mark.anyio
async def test_a_cancelled_request_is_not_retried_and_leaves_the_client_usable(
    server: ScriptedServer,
) -> None:
    slow = server.script(Reply(200, b"late", delay=3.0))
    fast = server.script(Reply(200, b"fine"))
    recorder = Recorder()
    with hooks(recorder):
        async with client(quick_retry()) as http:
            with anyio.move_on_after(0.2) as scope:
                await http.get(slow)
            assert scope.cancelled_caught
            assert (await http.get(fast)).text == "fine"
    assert recorder.events == []  # a cancellation is no failure: nothing retried or counted
    assert len(server.received(slow)) == 1


class ReadingTransport(httpx.AsyncBaseTransport):
    """A transport that reads each response into memory before handing it on (as a cache
    or a recording layer does)."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        await response.aread()
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.mark.anyio
async def test_an_inner_transport_that_reads_responses_works_the_same(
    server: ScriptedServer,
) -> None:
    url = server.script(Reply(502, b"one"), Reply(502, b"two"), Reply(200, b"three"))
    with set_testing(True):
        async with client(quick_retry(2), transport=ReadingTransport()) as http:
            response = await http.get(url)
            assert (response.status_code, response.text) == (502, "two")
            assert (await http.get(url)).text == "three"


@pytest.mark.anyio
async def test_other_statuses_return_at_once(server: ScriptedServer) -> None:
    url = server.script(Reply(500, b"bug"), Reply(200, b"never"))
    async with client(quick_retry()) as http:
        response = await http.get(url)
    assert (response.status_code, response.text) == (500, "bug")
    assert len(server.received(url)) == 1


@pytest.mark.anyio
async def test_post_is_sent_once_through_the_guards(server: ScriptedServer) -> None:
    url = server.script(Reply(503, b"busy"), Reply(201, b"created"))
    breaker = ra.CircuitBreaker("post-guard", window=1, min_calls=1)
    recorder = Recorder()
    with set_testing(True), hooks(recorder):
        async with client(ra.pipeline(quick_retry(), breaker)) as http:
            response = await http.post(url, content=b"order")
    assert (response.status_code, response.text) == (503, "busy")
    assert [r.body for r in server.received(url)] == [b"order"]
    (gave_up,) = recorder.of("retry.gave_up")
    assert gave_up.stop_reason == "not_retryable"
    assert breaker.state is ra.BreakerState.OPEN  # the guard saw the failure


@pytest.mark.anyio
async def test_a_put_with_a_body_is_retried_and_the_body_replayed(server: ScriptedServer) -> None:
    url = server.script(Reply(504), Reply(200, b"stored"))
    with set_testing(True):
        async with client(quick_retry()) as http:
            response = await http.put(url, json={"a": 1})
    assert response.text == "stored"
    assert [r.body for r in server.received(url)] == [b'{"a":1}', b'{"a":1}']


@pytest.mark.anyio
async def test_a_streamed_body_is_never_retried(server: ScriptedServer) -> None:
    url = server.script(Reply(503, b"busy"), Reply(200, b"stored"))

    async def upload() -> AsyncIterator[bytes]:
        yield b"part 1, "
        yield b"part 2"

    with set_testing(True):
        async with client(quick_retry()) as http:
            response = await http.put(url, content=upload())
    assert response.status_code == 503
    assert [r.body for r in server.received(url)] == [b"part 1, part 2"]


@pytest.mark.anyio
async def test_a_multipart_body_is_replayed_when_its_files_can_be_rewound(
    server: ScriptedServer,
) -> None:
    url = server.script(Reply(503), Reply(200, b"uploaded"))
    with set_testing(True):
        async with client(quick_retry()) as http:
            files = {"report": ("r.txt", io.BytesIO(b"line 1\nline 2\n"))}
            response = await http.put(url, data={"kind": "daily"}, files=files)
    assert response.text == "uploaded"
    first, second = server.received(url)
    assert b"line 1\nline 2\n" in first.body
    assert b"daily" in first.body
    assert first.body == second.body


class OneShot(io.RawIOBase):
    """A byte source that can be read once, like a socket: no seek, no file number."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
        size = min(len(buffer), len(self._data))
        buffer[:size] = self._data[:size]
        self._data = self._data[size:]
        return size


@pytest.mark.anyio
async def test_a_multipart_body_that_cannot_be_rewound_is_sent_once(
    server: ScriptedServer,
) -> None:
    url = server.script(Reply(503), Reply(200))
    with set_testing(True):
        async with client(quick_retry()) as http:
            source = io.BufferedReader(OneShot(b"streamed once"))
            response = await http.put(url, files={"log": ("log.txt", source)})
    assert response.status_code == 503
    (only,) = server.received(url)
    assert b"streamed once" in only.body


@pytest.mark.anyio
async def test_methods_decide_what_is_retried(server: ScriptedServer) -> None:
    url = server.script(Reply(503), Reply(200, b"patched"))
    with set_testing(True):
        async with client(quick_retry(), methods=("patch",)) as http:
            response = await http.patch(url, content=b"x")
    assert response.text == "patched"
    url = server.script(Reply(503), Reply(200))
    with set_testing(True):
        async with client(quick_retry(), methods=("PATCH",)) as http:
            response = await http.get(url)
    assert response.status_code == 503


@pytest.mark.anyio
async def test_a_hedge_never_resends_a_post(server: ScriptedServer) -> None:
    url = server.script(Reply(503, b"busy"), Reply(200))
    async with client(ra.Hedge(0.0, max_attempts=3)) as http:
        response = await http.post(url, content=b"once")
    assert response.status_code == 503
    assert len(server.received(url)) == 1


@pytest.mark.anyio
async def test_connection_refused_propagates_unchanged() -> None:
    recorder = Recorder()
    with set_testing(True), hooks(recorder):
        async with client(quick_retry(3)) as http:
            with pytest.raises(httpx.ConnectError) as caught:
                await http.get(refused_url())
    assert type(caught.value) is httpx.ConnectError
    assert len(recorder.of("retry.scheduled")) == 2
    assert recorder.of("retry.gave_up")[0].stop_reason == "attempts"


@pytest.mark.anyio
async def test_an_open_breaker_sends_nothing(server: ScriptedServer) -> None:
    url = server.script(Reply(200))
    breaker = ra.CircuitBreaker("open-guard")
    breaker.force_open()
    async with client(ra.pipeline(quick_retry(), breaker)) as http:
        with pytest.raises(ra.CircuitOpenError):
            await http.get(url)
    assert server.received(url) == []


@pytest.mark.anyio
async def test_an_empty_rate_limiter_sends_nothing(server: ScriptedServer) -> None:
    url = server.script(Reply(200, b"first"))
    limiter = ra.RateLimiter(1, per=3600)
    async with client(limiter) as http:
        assert (await http.get(url)).text == "first"
        with pytest.raises(ra.RateLimitedError):
            await http.get(url)
    assert len(server.received(url)) == 1


@pytest.mark.anyio
async def test_the_deadline_travels_as_a_header(server: ScriptedServer) -> None:
    url = server.script(Reply(200))
    async with client(quick_retry()) as http:
        await http.get(url)
        with ra.deadline(30):
            await http.get(url)
    async with client(ra.pipeline(quick_retry(), ra.Timeout(5))) as http:
        with ra.deadline(30):
            await http.get(url)  # the per-attempt timeout is the nearer deadline
    without, within, per_attempt = server.received(url)
    assert "x-request-timeout-ms" not in without.headers
    assert 25_000 < int(within.headers["x-request-timeout-ms"]) <= 30_000
    assert 0 < int(per_attempt.headers["x-request-timeout-ms"]) <= 5_000


@pytest.mark.anyio
async def test_the_deadline_header_can_be_renamed_or_left_out(server: ScriptedServer) -> None:
    url = server.script(Reply(200))
    async with client(quick_retry(), deadline_header="X-Budget-Ms") as renamed:
        with ra.deadline(30):
            await renamed.get(url)
    async with client(quick_retry(), propagate_deadline=False) as silent:
        with ra.deadline(30):
            await silent.get(url)
    first, second = server.received(url)
    assert "x-request-timeout-ms" not in first.headers
    assert int(first.headers["x-budget-ms"]) > 0
    assert "x-request-timeout-ms" not in second.headers


@pytest.mark.anyio
async def test_a_fallback_must_give_a_response(server: ScriptedServer) -> None:
    url = server.script(Reply(200))
    broken = ra.pipeline(ra.Fallback("stale"), ra.Timeout(0.0))
    async with client(broken) as http:
        with pytest.raises(TypeError, match=r"instead of an httpx\.Response"):
            await http.get(url)


# --- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"retry_statuses": (503, 600)}, ValueError, "retry_statuses must be codes in 100-599"),
        ({"retry_statuses": (99,)}, ValueError, "100-599, got 99"),
        ({"retry_statuses": 503}, TypeError, "collection of HTTP status codes"),
        ({"retry_statuses": ("503",)}, TypeError, "int status codes"),
        ({"methods": ("GET", "FETCH")}, ValueError, "methods must be among .*'FETCH'"),
        ({"methods": "GET"}, TypeError, "collection of HTTP methods"),
        ({"deadline_header": "bad header"}, ValueError, "valid HTTP header name"),
        ({"deadline_header": ""}, ValueError, "deadline_header"),
        ({"propagate_deadline": "yes"}, TypeError, "propagate_deadline must be a bool"),
        ({"transport": httpx.HTTPTransport()}, TypeError, "AsyncBaseTransport"),
    ],
)
def test_bad_arguments_fail_at_construction(
    options: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        AsyncResilientTransport(ra.Retry(), **options)  # type: ignore[arg-type]
    if "transport" in options:
        options["transport"].close()  # type: ignore[attr-defined]


def test_a_policy_of_the_other_flavour_is_refused() -> None:
    with pytest.raises(TypeError, match=r"resilient_async policy"):
        AsyncResilientTransport(ra_sync.Retry())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"resilient_async\.sync policy"):
        ResilientTransport(ra.Retry())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="policy must be"):
        AsyncResilientTransport(print)  # type: ignore[arg-type]


def test_the_defaults_are_those_of_the_contract() -> None:
    transport = AsyncResilientTransport(ra.Retry())
    assert transport.retry_statuses == {429, 502, 503, 504}
    assert transport.methods == {"GET", "HEAD", "OPTIONS", "PUT", "DELETE"}
    assert transport.deadline_header == "x-request-timeout-ms"
    assert isinstance(transport.transport, httpx.AsyncHTTPTransport)


def test_without_httpx_the_import_names_the_extra() -> None:
    code = "import sys; sys.modules['httpx'] = None\nimport resilient_async.integrations.httpx"
    result = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "pip install resilient-async[httpx]" in result.stderr
