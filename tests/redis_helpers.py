"""Helpers of the Redis tests: unique key prefixes, private servers, worker processes."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis

URL = "redis://127.0.0.1:6379/0"
ROOT = Path(__file__).resolve().parent.parent


def unique_prefix() -> str:
    """A key prefix no other test (or helper running in parallel) uses."""
    return f"ra-test-{uuid.uuid4().hex[:12]}"


def delete_prefix(prefix: str, url: str = URL) -> None:
    """Remove every key under `prefix`."""
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(f"{prefix}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@contextlib.contextmanager
def prefix_on(url: str = URL) -> Iterator[str]:
    """A fresh prefix, and its keys deleted afterwards."""
    prefix = unique_prefix()
    try:
        yield prefix
    finally:
        with contextlib.suppress(redis.RedisError):
            delete_prefix(prefix, url)


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PrivateServer:
    """A redis-server of this test's own on a free loopback port, stopped by its pid."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None, "the redis-server binary is not installed"
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_timeout=1.0, socket_connect_timeout=1.0)
        try:
            for _ in range(300):
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    time.sleep(0.02)
            raise AssertionError(f"redis-server on port {self.port} did not start")
        finally:
            client.close()

    def kill(self) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        self.process = None


@contextlib.contextmanager
def private_server() -> Iterator[PrivateServer]:
    """Start a private server; always kill it afterwards."""
    server = PrivateServer()
    server.start()
    try:
        yield server
    finally:
        server.kill()


def start_worker(role: str, prefix: str, index: int, *args: object) -> subprocess.Popen[str]:
    """Start one worker process of `role` (see tests/redis_workers.py)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.redis_workers",
            role,
            URL,
            prefix,
            str(index),
            *map(str, args),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until_ready(prefix: str, count: int, timeout: float = 120.0) -> None:
    """Block until `count` workers announced themselves."""
    client = redis.Redis.from_url(URL)
    try:
        deadline = time.monotonic() + timeout
        while len(list(client.scan_iter(f"{prefix}:ready:*"))) < count:
            assert time.monotonic() < deadline, "the workers did not start in time"
            time.sleep(0.02)
    finally:
        client.close()


def go(prefix: str) -> None:
    """Release the workers waiting for the signal."""
    client = redis.Redis.from_url(URL)
    try:
        client.set(f"{prefix}:go", 1, ex=120)
    finally:
        client.close()


def reports(workers: list[subprocess.Popen[str]], timeout: float = 120.0) -> list[dict[str, Any]]:
    """Wait for each worker and return the JSON report it printed."""
    found = []
    for worker in workers:
        out, err = worker.communicate(timeout=timeout)
        assert worker.returncode == 0, err
        found.append(json.loads(out.strip().splitlines()[-1]))
    return found
