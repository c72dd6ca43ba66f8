"""RedisStore: policy state shared by every process that reaches one Redis server.

The store owns the connection, the scripts and the health of the link; the ports in
`redis_ports` turn each policy step into one script call. Every step is bounded by
`timeout`. When one fails (refused, timed out, the server gone mid-run) the store is
degraded: it says so once (event `store.degraded`, one log warning), every policy switches
to its local state at once, and a background probe pings the server with a growing delay
until it answers; then the store emits `store.recovered` and the policies go back to the
shared state (their local state is dropped, and the server's state, possibly changed by
other processes meanwhile, rules again).

Written for asyncio (redis-py's asyncio client runs only there); the sync twin, generated
from this source, uses redis-py's sync client.
"""

from __future__ import annotations

import importlib
import logging
import math
from collections.abc import Callable, Hashable
from datetime import timedelta
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

from ..instrumentation import emit
from ..stores import scripts
from . import _backend
from .ports import (
    BreakerConfig,
    BudgetConfig,
    LimiterConfig,
    MemoryBreakerPort,
    MemoryBudgetPort,
    MemoryLimiterPort,
)
from .redis_ports import TRIO_ADVICE, RedisBreakerPort, RedisBudgetPort, RedisLimiterPort

__all__ = ["RedisStore"]

S = TypeVar("S")

_log = logging.getLogger("resilient_async.stores")

PROBE_FIRST: Final = 0.1
"""Seconds from a failure to the first probe; each failed probe doubles it."""

PROBE_MAX: Final = 2.0
"""The longest wait between two probes, in seconds."""

_SCHEMES: Final = ("redis", "rediss", "unix")
_FLAVOUR: Final = "async" if _backend.IS_ASYNC else "sync"


class RedisStore:
    """Share breakers, rate limiters and retry budgets across processes through Redis.

    Pass it as `store=` to `CircuitBreaker`, `RateLimiter` or `RetryBudget`: instances with
    the same kind and name, in any number of processes, then share one state. Each step
    (admit a call, record an outcome, take tokens, withdraw a retry) is one Lua script run
    atomically on the server with the server's clock; a half-open breaker admits exactly
    `half_open_calls` probes across all processes. A closed breaker costs one round trip per
    call (its outcome), a retry budget one per retry (deposits are batched); see "Running
    many replicas" in the docs for the consistency model.

    If Redis is unreachable or slower than `timeout`, policies keep working on local state;
    the store reports it once (event `store.degraded`, a log warning), probes the server in
    the background, and returns to shared state when it answers (event `store.recovered`).
    No call waits on the store longer than `timeout`.

    Args:
        client_or_url: A redis-py client of this flavour (`redis.asyncio.Redis` for the async
            policies, `redis.Redis` for `resilient_async.sync`), or a `redis://`,
            `rediss://` or `unix://` URL (the store then owns its client, with `timeout` as
            its socket timeouts and no retries of its own).
        prefix: The start of every key (`<prefix>:{<kind>:<name>}:...`, a Redis Cluster
            hash tag per policy); non-empty, no whitespace or braces.
        timeout: The longest a call waits on the store, in seconds > 0 (or a timedelta).

    Raises:
        TypeError: `client_or_url` is neither a URL nor a client of this flavour, or
            `prefix`/`timeout` has the wrong type.
        ValueError: The URL is malformed, `prefix` is empty or holds whitespace or braces,
            or `timeout` is not a finite number > 0.
        ImportError: redis-py is not installed (the `redis` extra).

    Example:
        >>> store = RedisStore("redis://localhost:6379/0", prefix="checkout")
        >>> # CircuitBreaker("payments", store=store) in every replica: one breaker
    """

    def __init__(
        self,
        client_or_url: Any,
        *,
        prefix: str = "resilient_async",
        timeout: float | timedelta = 0.1,
    ) -> None:
        self.prefix = _check_prefix(prefix)
        self.timeout = _check_timeout(timeout)
        redis: Any = _import_redis()
        self._owns_client = isinstance(client_or_url, str)
        self._url = client_or_url if self._owns_client else None
        if self._owns_client:
            self._client = _client_from_url(redis, client_or_url, self.timeout)
        elif isinstance(client_or_url, redis.Redis):
            self._client = client_or_url
        else:
            raise TypeError(
                f"client_or_url must be a redis:// URL or a {_backend.REDIS_CLIENT}.Redis client "
                f"(the {_FLAVOUR} policies' client), got {client_or_url!r}"
            )
        exceptions = importlib.import_module("redis.exceptions")
        # What means "the store cannot answer now": any redis-py error, a socket error, or
        # our own timeout. A script that the server lost (a restart) is reloaded by
        # redis-py's Script object, which calls by SHA and loads again on NOSCRIPT.
        # A client whose connections belong to an event loop that has ended raises
        # RuntimeError: for a client passed in, that is an outage too.
        self._errors: tuple[type[BaseException], ...] = (
            exceptions.RedisError,
            OSError,
            TimeoutError,
            RuntimeError,
        )
        self._register_scripts()
        self._loop: object = None  # the loop the client's connections belong to
        # For reads that cannot await (`breaker.state`): a blocking client, made on first use.
        self._reader: Any = None
        self._reader_scripts: dict[str, Any] = {}
        self._ports: dict[tuple[str, str], tuple[Hashable, object]] = {}
        self._lock = _backend.Lock()
        self._degraded = False
        self._closed = False
        self._probe: _backend.Background | None = None
        self._label = f"RedisStore({self.prefix})"

    def __repr__(self) -> str:
        return f"RedisStore(prefix={self.prefix!r}, timeout={self.timeout!r})"

    def _register_scripts(self) -> None:
        # No I/O: a script is sent by SHA, and loaded on the first NOSCRIPT.
        register = self._client.register_script
        self._scripts = {
            "breaker": register(scripts.BREAKER),
            "limiter": register(scripts.LIMITER),
            "budget": register(scripts.BUDGET),
        }

    def _bind(self) -> None:
        """Give a client made from a URL fresh connections when another loop runs now."""
        loop = _backend.loop_key()
        if loop is self._loop:
            return
        if self._loop is not None and self._url is not None:
            # The old connections belong to a loop that has ended (asyncio.run again, a
            # test per loop): start over with a new client, as a new process would.
            self._client = _client_from_url(_import_redis(), self._url, self.timeout)
            self._register_scripts()
        self._loop = loop

    @property
    def closed(self) -> bool:
        """True once `close()` was called."""
        return self._closed

    @property
    def degraded(self) -> bool:
        """True while the server does not answer and policies run on local state."""
        return self._degraded

    # --- what the policies ask ------------------------------------------------------------

    def shared(
        self,
        kind: str,
        name: str,
        config: Hashable,
        factory: Callable[[], S],
        *,
        flavour: str | None = None,
    ) -> S:
        """Return the port of `kind` named `name`, one per process, with a local fallback.

        Raises:
            TypeError: The policy is of the other flavour, or of a kind this store cannot
                share.
            ValueError: A policy of that kind and name in this process has other settings,
                or the name holds braces.
        """
        if flavour != _FLAVOUR:
            other = "resilient_async.sync" if _FLAVOUR == "sync" else "resilient_async"
            raise TypeError(
                f"this RedisStore serves the {_FLAVOUR} policies (its client is "
                f"{_backend.REDIS_CLIENT}.Redis); use the RedisStore of {other}'s twin "
                "for the other flavour (both may share the same Redis keys)"
            )
        if any(c in "{}" for c in name):
            raise ValueError(
                f"the name of a {kind} shared through a RedisStore cannot hold braces (its "
                f"keys carry it in a Redis Cluster hash tag), got {name!r}"
            )
        key = (kind, name)
        with self._lock:
            found = self._ports.get(key)
            if found is None:
                port = self._make_port(kind, name, config, factory())
                self._ports[key] = (config, port)
                return port  # type: ignore[no-any-return]
        existing_config, port = found
        if existing_config != config:
            raise ValueError(
                f"a {kind} named {name!r} already uses this store with another "
                f"configuration ({existing_config!r}); use another name or the same settings"
            )
        return port  # type: ignore[return-value]

    def _make_port(self, kind: str, name: str, config: Hashable, local: object) -> Any:
        base = f"{self.prefix}:{{{kind}:{name}}}"
        if kind == "breaker" and isinstance(local, MemoryBreakerPort):
            assert isinstance(config, BreakerConfig)
            return RedisBreakerPort(self, name, base, config, local)
        if kind == "limiter" and isinstance(local, MemoryLimiterPort):
            assert isinstance(config, LimiterConfig)
            return RedisLimiterPort(self, name, base, config, local)
        if kind == "retry_budget" and isinstance(local, MemoryBudgetPort):
            assert isinstance(config, BudgetConfig)
            return RedisBudgetPort(self, name, base, config, local)
        raise TypeError(
            f"a RedisStore shares breakers, rate limiters and retry budgets, not {kind}"
        )

    async def step(self, script: str, keys: list[str], args: list[object]) -> Any:
        """Run one call of `script` (its kind) within `timeout`; None if degraded now.

        Raises:
            RuntimeError: The async store is used outside asyncio (on trio).
        """
        if self._degraded:
            return None
        _backend.require_asyncio("RedisStore (redis-py's asyncio client)", TRIO_ADVICE)
        self._bind()
        try:
            run = self._scripts[script]
            return await _backend.within(self.timeout, run(keys=keys, args=args))
        except self._errors as error:
            self._degrade(error)
            return None

    def read(self, script: str, keys: list[str], args: list[object]) -> Any:
        """Run one read-only call of `script` blocking, within `timeout`; None if it fails.

        For the reads that cannot await (`state`, `metrics()` of a shared breaker). The sync
        store uses its client; the async one a sync client of its own, made from its URL
        (None when it was given a client: the caller then shows what it last saw). A failed
        read changes nothing, not even the store's health: the next step will tell.
        """
        if self._degraded:
            return None
        found = self._reader_scripts.get(script)
        if found is None:
            reader = self._client if not _backend.IS_ASYNC else self._sync_reader()
            if reader is None:
                return None
            sources = {"breaker": scripts.BREAKER, "limiter": scripts.LIMITER}
            found = self._reader_scripts[script] = reader.register_script(sources[script])
        try:
            return found(keys=keys, args=args)
        except self._errors:
            return None

    def _sync_reader(self) -> Any:
        if self._reader is None and self._url is not None:
            self._reader = _client_from_url(_import_redis("redis"), self._url, self.timeout)
        return self._reader

    # --- health ---------------------------------------------------------------------------

    def _degrade(self, error: BaseException) -> None:
        with self._lock:
            if self._degraded or self._closed:
                return
            self._degraded = True
        _log.warning(
            "%s: Redis did not answer (%r); policies use local state until it does",
            self._label,
            error,
        )
        emit("store.degraded", self._label, error=error)
        self._probe = _backend.Background(self._probe_until_recovered)

    async def _probe_until_recovered(self) -> None:
        delay = PROBE_FIRST
        while True:
            await _backend.sleep(delay)
            if self.closed:
                return
            self._bind()
            try:
                await _backend.within(self.timeout, self._client.ping())
            except self._errors:
                delay = min(delay * 2.0, PROBE_MAX)
                continue
            self._recover()
            return

    def _recover(self) -> None:
        with self._lock:
            ports = [port for _, port in self._ports.values()]
            self._degraded = False
        now = _backend.current_time()
        for port in ports:
            forget = getattr(port, "forget_view", None)
            if forget is not None:
                forget(now)
        _log.info("%s: Redis answers again; policies use the shared state", self._label)
        emit("store.recovered", self._label)

    async def close(self) -> None:
        """Stop the background probe and close the client the store made from a URL."""
        self._closed = True
        probe = self._probe
        if probe is not None:
            await probe.stop()
        for _, port in list(self._ports.values()):
            close = getattr(port, "close", None)
            if close is not None:
                await close()
        if self._owns_client:
            await self._client.aclose()
        if self._reader is not None and self._reader is not self._client:
            self._reader.close()


def _import_redis(module: str = _backend.REDIS_CLIENT) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError("RedisStore needs redis-py: install resilient_async[redis]") from error


def _client_from_url(redis: Any, url: str, timeout: float) -> Any:
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES:
        raise ValueError(f"client_or_url must be a redis://, rediss:// or unix:// URL, got {url!r}")
    try:
        if parts.scheme != "unix" and not parts.hostname:
            raise ValueError("no host")
        _ = parts.port  # raises ValueError for a port that is not a number in range
        path = parts.path.strip("/")
        if parts.scheme != "unix" and path and not path.isdigit():
            raise ValueError(f"the database must be a number, got {path!r}")
        retry = importlib.import_module(f"{redis.__name__}.retry").Retry
        no_backoff = importlib.import_module("redis.backoff").NoBackoff
        return redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=retry(no_backoff(), 0),
        )
    except ValueError as error:
        raise ValueError(f"client_or_url is a malformed Redis URL {url!r}: {error}") from None


def _check_prefix(prefix: object) -> str:
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a non-empty str, got {prefix!r}")
    if not prefix or any(c.isspace() or c in "{}" for c in prefix):
        raise ValueError(
            f"prefix must be a non-empty str without whitespace or braces, got {prefix!r}"
        )
    return prefix


def _check_timeout(timeout: object) -> float:
    if isinstance(timeout, timedelta):
        timeout = timeout.total_seconds()
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"timeout must be a number of seconds > 0, got {timeout!r}")
    if not 0.0 < timeout < math.inf:  # also rejects NaN
        raise ValueError(f"timeout must be a finite number of seconds > 0, got {timeout!r}")
    return float(timeout)
