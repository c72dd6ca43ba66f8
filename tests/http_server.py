"""A real HTTP/1.1 server on 127.0.0.1, in a thread, that plays scripted responses.

Each test registers a script under a path of its own and gets the URL back; the server
answers the requests to that path with the script's responses in order (repeating the last
one) and records every request it received (method, headers, body, client port).
"""

from __future__ import annotations

import http.server
import itertools
import socket
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering


@dataclass(frozen=True)
class Received:
    method: str
    headers: Mapping[str, str]  # lower-cased names
    body: bytes
    client_port: int


class ScriptedServer:
    """Serve scripts registered with `script()`; see the module documentation."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self._lock = threading.Lock()
        self._scripts: dict[str, list[Reply]] = {}
        self._received: dict[str, list[Received]] = {}
        self._names = itertools.count()

    def script(self, *replies: Reply) -> str:
        """Register `replies` under a new path; return its URL."""
        assert replies
        path = f"/s{next(self._names)}"
        with self._lock:
            self._scripts[path] = list(replies)
            self._received[path] = []
        return self.base + path

    def received(self, url: str) -> list[Received]:
        """Return the requests received so far for a script's URL."""
        with self._lock:
            return list(self._received[url.removeprefix(self.base)])

    def answer(self, path: str, request: Received) -> Reply:
        with self._lock:
            if path not in self._scripts:
                return Reply(404, b"no script")
            self._received[path].append(request)
            replies = self._scripts[path]
            return replies.pop(0) if len(replies) > 1 else replies[0]


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so tests can see connections reused
    server: _Server

    def _handle(self) -> None:
        received = Received(
            self.command,
            {k.lower(): v for k, v in self.headers.items()},
            self._body(),
            self.client_address[1],
        )
        reply = self.server.scripted.answer(self.path, received)
        time.sleep(reply.delay)
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = _handle

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                chunk = self.rfile.read(size)
                self.rfile.readline()  # the CRLF after each chunk
                if size == 0:
                    return b"".join(chunks)
                chunks.append(chunk)
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output clean


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    scripted: ScriptedServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a client that hung up early (a test that expected it)
        super().handle_error(request, client_address)


@contextmanager
def serving() -> Iterator[ScriptedServer]:
    """Run a server on a free port of 127.0.0.1 for the enclosed block."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.scripted = ScriptedServer(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, name="scripted-http", daemon=True)
    thread.start()
    try:
        yield server.scripted
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def refused_url() -> str:
    """Return a URL on 127.0.0.1 where nothing listens (a port just freed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"
