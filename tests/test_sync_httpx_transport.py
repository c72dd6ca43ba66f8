"""The sync httpx transport against a real HTTP server on 127.0.0.1, from several threads."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator

import httpx
import pytest

import resilient_async as ra
import resilient_async.sync as ra_sync
from resilient_async import backoff
from resilient_async.instrumentation import hooks
from resilient_async.integrations.httpx import ResilientTransport

from .helpers import Recorder
from .http_server import Reply, ScriptedServer, refused_url, serving

pytestmark = pytest.mark.real_time


@pytest.fixture(scope="module")
def server() -> Iterator[ScriptedServer]:
    with serving() as scripted:
        yield scripted


def sync_client(policy: object, **options: object) -> httpx.Client:
    transport = ResilientTransport(policy, **options)  # type: ignore[arg-type]
    return httpx.Client(transport=transport)


def test_the_sync_transport_from_several_threads(server: ScriptedServer) -> None:
    """Many threads share one client and one policy; each request is retried on its own."""
    urls = [
        server.script(Reply(503, b"busy"), Reply(502, b"bad"), Reply(200, f"ok {n}".encode()))
        for n in range(16)
    ]
    policy = ra_sync.Retry(attempts=3, backoff=backoff.constant(0))
    with sync_client(policy) as http, concurrent.futures.ThreadPoolExecutor(8) as pool:
        texts = list(pool.map(lambda url: http.get(url).text, urls))
    assert texts == [f"ok {n}" for n in range(16)]
    assert all(len(server.received(url)) == 3 for url in urls)


def test_the_sync_transport_follows_the_same_rules(server: ScriptedServer) -> None:
    given_up = server.script(Reply(502, b"one"), Reply(502, b"two"))
    posted = server.script(Reply(503), Reply(200))
    header = server.script(Reply(200))
    policy = ra_sync.Retry(attempts=2, backoff=backoff.constant(0))
    with sync_client(policy) as http:
        response = http.get(given_up)
        assert (response.status_code, response.text) == (502, "two")
        assert http.post(posted, content=b"x").status_code == 503
        with ra_sync.deadline(30):
            http.get(header)
        with pytest.raises(httpx.ConnectError):
            http.get(refused_url())
    assert len(server.received(posted)) == 1
    assert 25_000 < int(server.received(header)[0].headers["x-request-timeout-ms"]) <= 30_000


def test_the_sync_transport_lets_an_open_breaker_reject(server: ScriptedServer) -> None:
    url = server.script(Reply(200))
    breaker = ra_sync.CircuitBreaker("sync-open-guard")
    breaker.force_open()
    with sync_client(breaker) as http, pytest.raises(ra.CircuitOpenError):
        http.get(url)
    assert server.received(url) == []


def test_the_sync_transport_honours_retry_after(server: ScriptedServer) -> None:
    url = server.script(Reply(429, b"slow down", {"Retry-After": "1"}), Reply(200, b"ok"))
    recorder = Recorder()
    policy = ra_sync.Retry(attempts=2, backoff=backoff.constant(0))
    started = time.monotonic()
    with hooks(recorder), sync_client(policy) as http:
        assert http.get(url).text == "ok"
    assert time.monotonic() - started >= 1.0
    (scheduled,) = recorder.of("retry.scheduled")
    assert scheduled.delay >= 1.0
