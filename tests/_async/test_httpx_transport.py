"""The httpx transports of both flavours against a real HTTP server on 127.0.0.1: given-up
responses, a POST sent once, the deadline header, an open breaker, Retry-After."""

from collections.abc import Iterator

import httpx
import pytest

from resilient_async import backoff
from resilient_async.instrumentation import hooks
from resilient_async.integrations.httpx import AsyncResilientTransport

from ..helpers import Recorder
from ..http_server import Reply, ScriptedServer, refused_url, serving
from ._backend import flavour as ra
from ._backend import now

pytestmark = pytest.mark.real_time


@pytest.fixture(scope="module")
def server() -> Iterator[ScriptedServer]:
    with serving() as scripted:
        yield scripted


def client(policy: object, **options: object) -> httpx.AsyncClient:
    transport = AsyncResilientTransport(policy, **options)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport)


async def test_the_transport_follows_the_rules(server: ScriptedServer) -> None:
    given_up = server.script(Reply(502, b"one"), Reply(502, b"two"))
    posted = server.script(Reply(503), Reply(200))
    header = server.script(Reply(200))
    policy = ra.Retry(attempts=2, backoff=backoff.constant(0))
    async with client(policy) as http:
        response = await http.get(given_up)
        assert (response.status_code, response.text) == (502, "two")
        assert (await http.post(posted, content=b"x")).status_code == 503
        with ra.deadline(30):
            await http.get(header)
        with pytest.raises(httpx.ConnectError):
            await http.get(refused_url())
    assert len(server.received(posted)) == 1
    assert 25_000 < int(server.received(header)[0].headers["x-request-timeout-ms"]) <= 30_000


async def test_the_transport_lets_an_open_breaker_reject(server: ScriptedServer) -> None:
    url = server.script(Reply(200))
    breaker = ra.CircuitBreaker("open-guard")
    breaker.force_open()
    async with client(breaker) as http:
        with pytest.raises(ra.CircuitOpenError):
            await http.get(url)
    assert server.received(url) == []


async def test_the_transport_honours_retry_after(server: ScriptedServer) -> None:
    url = server.script(Reply(429, b"slow down", {"Retry-After": "1"}), Reply(200, b"ok"))
    recorder = Recorder()
    policy = ra.Retry(attempts=2, backoff=backoff.constant(0))
    started = now()
    with hooks(recorder):
        async with client(policy) as http:
            assert (await http.get(url)).text == "ok"
    assert now() - started >= 1.0
    (scheduled,) = recorder.of("retry.scheduled")
    assert scheduled.delay >= 1.0
