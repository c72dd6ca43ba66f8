"""The sync httpx transport against a real HTTP server on 127.0.0.1, from several threads (the
rules both transports share are tested once for both, in tests/_async)."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator

import httpx
import pytest

import resilient_async.sync as ra_sync
from resilient_async import backoff
from resilient_async.integrations.httpx import ResilientTransport

from ..http_server import Reply, ScriptedServer, serving

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
