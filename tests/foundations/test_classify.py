"""Error classification, Retry-After parsing and the shared on= matcher."""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import email.message
import errno
import http
import importlib
import math
import pickle
import socket
import subprocess
import sys
import threading
import urllib.error
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from types import SimpleNamespace
from typing import Any

import anyio
import httpx
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from resilient_async.classify import (
    DEFAULT,
    Classifier,
    DefaultType,
    ErrorClass,
    classify,
    compile_on,
    get_classifier,
    retry_after,
    set_classifier,
    use_classifier,
)
from resilient_async.errors import (
    BulkheadFullError,
    CircuitOpenError,
    CompensationError,
    DeadlineExceeded,
    RateLimitedError,
)

TRANSIENT = ErrorClass.TRANSIENT
THROTTLED = ErrorClass.THROTTLED
TIMEOUT = ErrorClass.TIMEOUT
PERMANENT = ErrorClass.PERMANENT
CANCELLED = ErrorClass.CANCELLED
UNKNOWN = ErrorClass.UNKNOWN


def _id(value: object) -> str:
    """A test id that does not depend on hash order or memory addresses."""
    if isinstance(value, (set, frozenset)):
        return "{" + ", ".join(sorted(map(repr, value))) + "}"
    if callable(value) and not isinstance(value, type):
        return getattr(value, "__qualname__", "callable")
    return repr(value)[:60]


@pytest.fixture(autouse=True)
def _restore_process_default() -> Iterator[None]:
    before = get_classifier()
    yield
    set_classifier(before)


# --- ErrorClass and the module surface ------------------------------------------------------


def test_error_class_values_are_lowercase_names() -> None:
    assert {member.name: member.value for member in ErrorClass} == {
        "TRANSIENT": "transient",
        "THROTTLED": "throttled",
        "TIMEOUT": "timeout",
        "PERMANENT": "permanent",
        "CANCELLED": "cancelled",
        "UNKNOWN": "unknown",
    }
    assert ErrorClass("timeout") is TIMEOUT


def test_all_is_sorted_and_complete() -> None:
    # `resilient_async.classify` is also the name of the top-level function, so the module
    # is reached through sys.modules (`from resilient_async.classify import X` works too).
    classify_module = importlib.import_module("resilient_async.classify")
    names = classify_module.__all__
    assert names == sorted(names)
    for name in names:
        assert hasattr(classify_module, name), name
    assert {"DEFAULT", "OnSpec", "compile_on", "classify", "retry_after"} <= set(names)


def test_importing_and_classifying_never_imports_trio() -> None:
    code = (
        "import sys, asyncio\n"
        "import resilient_async\n"
        "before = 'trio' in sys.modules\n"
        "from resilient_async.classify import classify, compile_on, ErrorClass\n"
        "assert classify(asyncio.CancelledError()) is ErrorClass.CANCELLED\n"
        "assert classify(ValueError()) is ErrorClass.PERMANENT\n"
        "assert not compile_on(BaseException, default=ValueError)(KeyboardInterrupt())\n"
        "assert ('trio' in sys.modules) == before, 'classify imported trio'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_default_rules_never_import_the_libraries_they_recognise() -> None:
    # Every family's rules run (a status, a SQLSTATE-shaped error, an OSError, a group), and
    # none of the libraries whose errors they know by name is imported.
    libraries = ("trio", "httpx", "aiohttp", "requests", "redis", "asyncpg", "psycopg", "psycopg2")
    code = (
        "import sys, asyncio\n"
        f"libraries = {libraries!r}\n"
        "import resilient_async\n"
        "before = {name for name in libraries if name in sys.modules}\n"
        "from resilient_async.classify import classify, ErrorClass\n"
        "class Status(Exception):\n"
        "    status_code = 503\n"
        "    headers = {'Retry-After': '1'}\n"
        "class Sql(Exception):\n"
        "    sqlstate = '40001'\n"
        "errors = [Status(), Sql(), OSError(104, 'reset'), ExceptionGroup('g', [ValueError()])]\n"
        "for exc in errors:\n"
        "    classify(exc)\n"
        "after = {name for name in libraries if name in sys.modules}\n"
        "assert after == before, f'classify imported {after - before}'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- The default table ----------------------------------------------------------------------


class _LibraryError(Exception):
    pass


class _CustomBaseException(BaseException):
    pass


DEFAULT_TABLE: list[tuple[BaseException, ErrorClass]] = [
    # stop signals
    (asyncio.CancelledError(), CANCELLED),
    (KeyboardInterrupt(), CANCELLED),
    (SystemExit(0), CANCELLED),
    (GeneratorExit(), CANCELLED),
    (concurrent.futures.CancelledError(), CANCELLED),
    (BaseExceptionGroup("g", [asyncio.CancelledError()]), CANCELLED),
    (BaseExceptionGroup("g", [ValueError(), BaseExceptionGroup("h", [SystemExit()])]), CANCELLED),
    # timeouts
    (TimeoutError(), TIMEOUT),
    (DeadlineExceeded(1.0), TIMEOUT),
    (DeadlineExceeded(None), TIMEOUT),
    (OSError(errno.ETIMEDOUT, "timed out"), TIMEOUT),
    (trio.TooSlowError(), TIMEOUT),
    # transient
    (ConnectionError(), TRANSIENT),
    (ConnectionResetError(), TRANSIENT),
    (ConnectionRefusedError(), TRANSIENT),
    (ConnectionAbortedError(), TRANSIENT),
    (BrokenPipeError(), TRANSIENT),
    (OSError(errno.EHOSTUNREACH, "no route"), TRANSIENT),
    (OSError(errno.ENETUNREACH, "unreachable"), TRANSIENT),
    (OSError(errno.EAGAIN, "try again"), TRANSIENT),
    (socket.gaierror(socket.EAI_AGAIN, "temporary failure"), TRANSIENT),
    # throttled
    (CircuitOpenError("db", 3.0), THROTTLED),
    (CircuitOpenError(None, None), THROTTLED),
    (BulkheadFullError("pool"), THROTTLED),
    (RateLimitedError("api", 0.5), THROTTLED),
    # permanent
    (ValueError(), PERMANENT),
    (TypeError(), PERMANENT),
    (KeyError("k"), PERMANENT),
    (IndexError(), PERMANENT),
    (LookupError(), PERMANENT),
    (AttributeError(), PERMANENT),
    (NotImplementedError(), PERMANENT),
    (PermissionError(), PERMANENT),
    (OSError(errno.EACCES, "denied"), PERMANENT),
    (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"), PERMANENT),
    # unknown
    (Exception(), UNKNOWN),
    (RuntimeError(), UNKNOWN),
    (ZeroDivisionError(), UNKNOWN),
    (_LibraryError(), UNKNOWN),
    (OSError(), UNKNOWN),
    (FileNotFoundError(errno.ENOENT, "missing"), UNKNOWN),
    (OSError(errno.ENOSPC, "full"), UNKNOWN),
    (socket.gaierror(socket.EAI_NONAME, "unknown host"), UNKNOWN),
    # Groups take the class their leaves agree on (issue 13, item 10); mixed ones are UNKNOWN.
    (ExceptionGroup("g", [ConnectionError()]), TRANSIENT),
    (
        ExceptionGroup("g", [ConnectionError(), ExceptionGroup("h", [ConnectionResetError()])]),
        TRANSIENT,
    ),
    (ExceptionGroup("g", [ConnectionError(), ValueError()]), UNKNOWN),
    (CompensationError("rollback failed", [ValueError()]), PERMANENT),
    (BaseExceptionGroup("g", [ValueError()]), PERMANENT),
    (BaseExceptionGroup("g", [_CustomBaseException()]), UNKNOWN),
    (_CustomBaseException(), UNKNOWN),
]


@pytest.mark.parametrize(("exc", "expected"), DEFAULT_TABLE, ids=_id)
def test_default_table(exc: BaseException, expected: ErrorClass) -> None:
    assert classify(exc) is expected
    assert Classifier().classify(exc) is expected


class _AppOSError(OSError):
    """An OSError subclass: Python does not pick a subclass from the errno for it."""


TRANSIENT_ERRNOS = [
    "ECONNRESET",
    "ECONNREFUSED",
    "ECONNABORTED",
    "EPIPE",
    "ESHUTDOWN",
    "EHOSTUNREACH",
    "EHOSTDOWN",
    "ENETUNREACH",
    "ENETDOWN",
    "ENETRESET",
    "EAGAIN",
    "EWOULDBLOCK",
    "EADDRNOTAVAIL",
    "ENOBUFS",
]


@pytest.mark.parametrize("name", TRANSIENT_ERRNOS)
def test_transient_errnos(name: str) -> None:
    code = getattr(errno, name, None)
    if code is None:
        pytest.skip(f"{name} does not exist on this platform")
    assert classify(_AppOSError(code, name)) is TRANSIENT
    assert classify(OSError(code, name)) is TRANSIENT


@pytest.mark.parametrize(
    "name", ["ENOENT", "EEXIST", "EISDIR", "ENOTDIR", "ENOSPC", "EBADF", "EINVAL", "EROFS"]
)
def test_non_transient_errnos_are_unknown(name: str) -> None:
    code = getattr(errno, name)
    assert classify(_AppOSError(code, name)) is UNKNOWN
    assert classify(OSError(code, name)) is UNKNOWN


def test_errno_of_a_subclass_follows_pythons_own_mapping() -> None:
    assert classify(_AppOSError(errno.ETIMEDOUT, "t")) is TIMEOUT
    assert classify(_AppOSError(errno.EACCES, "a")) is PERMANENT
    assert classify(_AppOSError(errno.EPERM, "p")) is PERMANENT


def test_malformed_errno_is_ignored() -> None:
    exc = _AppOSError()
    exc.errno = [errno.ECONNRESET]  # type: ignore[assignment]
    assert classify(exc) is UNKNOWN


def test_permission_error_wins_over_a_transient_errno() -> None:
    assert classify(PermissionError(errno.ECONNRESET, "odd")) is PERMANENT
    assert classify(PermissionError(errno.EPIPE, "odd")) is PERMANENT


def test_resolver_codes_are_not_read_as_errno() -> None:
    # EAI_* codes live in their own namespace; a numeric clash must not make them transient.
    assert classify(socket.gaierror(errno.ECONNRESET, "x")) is UNKNOWN
    assert classify(socket.herror(errno.ECONNRESET, "x")) is UNKNOWN


@pytest.mark.anyio
async def test_real_cancellation_is_cancelled() -> None:
    seen: list[object] = []
    with anyio.CancelScope() as scope:
        scope.cancel()
        try:
            await anyio.sleep(1)
        except anyio.get_cancelled_exc_class() as exc:
            seen.append(classify(exc))
            seen.append(compile_on(BaseException, default=ValueError)(exc))
            seen.append(compile_on(lambda e: True, default=ValueError)(exc))
            raise
    assert seen == [CANCELLED, False, False]


def test_trio_cancelled_is_cancelled() -> None:
    seen: list[BaseException] = []

    async def main() -> None:
        with trio.CancelScope() as scope:
            scope.cancel()
            try:
                await trio.sleep(1)
            except trio.Cancelled as exc:
                seen.append(exc)
                raise

    trio.run(main)
    assert len(seen) == 1
    assert isinstance(seen[0], trio.Cancelled)
    assert classify(seen[0]) is CANCELLED
    assert not compile_on(BaseException, default=ValueError)(seen[0])
    assert not compile_on(lambda exc: True, default=ValueError)(seen[0])


def test_trio_cancelled_is_found_through_sys_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    class FakeCancelled(BaseException):
        pass

    class Sub(FakeCancelled):
        pass

    classifier = Classifier()
    assert classifier.classify(Sub()) is UNKNOWN
    monkeypatch.setitem(sys.modules, "trio", SimpleNamespace(Cancelled=FakeCancelled))
    assert Classifier().classify(Sub()) is CANCELLED
    with pytest.raises(ValueError, match="never matched"):
        compile_on(FakeCancelled, default=ValueError)


# --- HTTP status codes ----------------------------------------------------------------------


class _StatusCodeError(Exception):
    def __init__(self, status_code: object, headers: object = None) -> None:
        super().__init__(status_code)
        self.status_code = status_code
        if headers is not None:
            self.headers = headers


class _StatusError(Exception):
    def __init__(self, status: object, headers: object = None) -> None:
        super().__init__(status)
        self.status = status
        if headers is not None:
            self.headers = headers


class _ResponseError(Exception):
    def __init__(self, status_code: object, headers: object = None) -> None:
        super().__init__(status_code)
        self.response = SimpleNamespace(status_code=status_code, headers=headers or {})


SHAPES = [_StatusCodeError, _StatusError, _ResponseError]

STATUS_RULES = [
    (429, THROTTLED),
    (503, TRANSIENT),
    (408, TRANSIENT),
    (500, TRANSIENT),
    (502, TRANSIENT),
    (504, TRANSIENT),
    (599, TRANSIENT),
    (400, PERMANENT),
    (401, PERMANENT),
    (403, PERMANENT),
    (404, PERMANENT),
    (409, PERMANENT),
    (422, PERMANENT),
    (499, PERMANENT),
    (200, UNKNOWN),
    (302, UNKNOWN),
    (600, UNKNOWN),
    (0, UNKNOWN),
    (None, UNKNOWN),
    ("503", UNKNOWN),
    (True, UNKNOWN),
    (503.0, UNKNOWN),
    (http.HTTPStatus.TOO_MANY_REQUESTS, THROTTLED),
    (http.HTTPStatus.NOT_FOUND, PERMANENT),
]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("status", "expected"), STATUS_RULES)
def test_http_status_rules(shape: Any, status: object, expected: ErrorClass) -> None:
    assert classify(shape(status)) is expected


@pytest.mark.parametrize("shape", SHAPES)
def test_503_with_retry_after_is_throttled(shape: Any) -> None:
    assert classify(shape(503, headers={"Retry-After": "30"})) is THROTTLED
    assert classify(shape(503, headers={"retry-after": "30"})) is THROTTLED
    # A Retry-After that cannot be read is no hint.
    assert classify(shape(503, headers={"Retry-After": "later"})) is TRANSIENT


def test_503_with_retry_after_attribute_is_throttled() -> None:
    exc = _StatusCodeError(503)
    exc.retry_after = 2.0  # type: ignore[attr-defined]
    assert classify(exc) is THROTTLED


def test_int_like_status() -> None:
    class Index:
        def __index__(self) -> int:
            return 429

    assert classify(_StatusError(Index())) is THROTTLED


def test_status_rule_wins_over_the_type_defaults() -> None:
    class HTTPTimeout(TimeoutError):
        status_code = 404

    class BadGateway(ValueError):
        status_code = 502

    class ThrottledConnection(ConnectionError):
        status = 429

    assert classify(HTTPTimeout()) is PERMANENT
    assert classify(BadGateway()) is TRANSIENT
    assert classify(ThrottledConnection()) is THROTTLED
    library_error = _fake("aiohttp.client_exceptions", "ClientConnectionError")()
    library_error.status = 404  # type: ignore[attr-defined]
    assert classify(library_error) is PERMANENT


def test_status_shapes_are_tried_in_order() -> None:
    exc = _ResponseError(404)
    exc.status_code = 503  # type: ignore[attr-defined]
    assert classify(exc) is PERMANENT
    exc.response = SimpleNamespace(status_code=None)
    assert classify(exc) is TRANSIENT
    response_none = _StatusError(429)
    response_none.response = None  # type: ignore[attr-defined]
    assert classify(response_none) is THROTTLED


def test_status_attribute_that_raises_is_ignored() -> None:
    class Broken(ConnectionError):
        @property
        def response(self) -> object:
            raise RuntimeError("no response yet")

    assert classify(Broken()) is TRANSIENT
    assert retry_after(Broken()) is None


def _httpx_status_error(
    status: int, headers: dict[str, str] | None = None
) -> httpx.HTTPStatusError:
    request = httpx.Request("GET", "https://example.test/items")
    response = httpx.Response(status, headers=headers, request=request)
    with pytest.raises(httpx.HTTPStatusError) as info:
        response.raise_for_status()
    return info.value


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (429, None, THROTTLED),
        (503, None, TRANSIENT),
        (503, {"Retry-After": "7"}, THROTTLED),
        (500, None, TRANSIENT),
        (408, None, TRANSIENT),
        (404, None, PERMANENT),
        (401, None, PERMANENT),
    ],
)
def test_real_httpx_status_error(
    status: int, headers: dict[str, str] | None, expected: ErrorClass
) -> None:
    assert classify(_httpx_status_error(status, headers)) is expected


def test_real_urllib_http_error() -> None:
    headers = email.message.Message()
    headers["Retry-After"] = "9"
    exc = urllib.error.HTTPError("https://example.test/", 503, "busy", headers, None)
    assert classify(exc) is THROTTLED
    assert retry_after(exc) == 9.0


# --- Third-party libraries, recognised without importing them -------------------------------


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (httpx.ConnectTimeout("t"), TIMEOUT),
        (httpx.ReadTimeout("t"), TIMEOUT),
        (httpx.PoolTimeout("t"), TIMEOUT),
        (httpx.ConnectError("c"), TRANSIENT),
        (httpx.ReadError("r"), TRANSIENT),
        (httpx.RemoteProtocolError("p"), TRANSIENT),
        (httpx.ProxyError("p"), TRANSIENT),
        (httpx.UnsupportedProtocol("ftp"), PERMANENT),
        (httpx.LocalProtocolError("bad header"), PERMANENT),
        (httpx.DecodingError("d"), UNKNOWN),
        (httpx.TooManyRedirects("r"), UNKNOWN),
    ],
)
def test_httpx_errors(exc: BaseException, expected: ErrorClass) -> None:
    assert classify(exc) is expected


def _fake(module: str, name: str, *bases: type) -> type[Exception]:
    return type(name, bases or (Exception,), {"__module__": module})


def test_aiohttp_errors_by_module_and_name() -> None:
    client_error = _fake("aiohttp.client_exceptions", "ClientError")
    connection = _fake("aiohttp.client_exceptions", "ClientConnectionError", client_error)
    server_connection = _fake("aiohttp.client_exceptions", "ServerConnectionError", connection)
    disconnected = _fake("aiohttp.client_exceptions", "ServerDisconnectedError", server_connection)
    timeout = _fake(
        "aiohttp.client_exceptions", "ServerTimeoutError", server_connection, TimeoutError
    )
    connector = _fake("aiohttp.client_exceptions", "ClientConnectorError", connection, OSError)
    ssl = _fake("aiohttp.client_exceptions", "ClientSSLError", connector)
    certificate = _fake("aiohttp.client_exceptions", "ClientConnectorCertificateError", ssl)
    payload = _fake("aiohttp.client_exceptions", "ClientPayloadError", client_error)

    assert classify(connection()) is TRANSIENT
    assert classify(disconnected()) is TRANSIENT
    assert classify(connector()) is TRANSIENT
    assert classify(ssl()) is TRANSIENT
    assert classify(timeout()) is TIMEOUT
    assert classify(certificate()) is PERMANENT
    assert classify(payload()) is UNKNOWN


def test_requests_errors_by_module_and_name() -> None:
    base = _fake("requests.exceptions", "RequestException", OSError)
    connection = _fake("requests.exceptions", "ConnectionError", base)
    timeout = _fake("requests.exceptions", "Timeout", base)
    connect_timeout = _fake("requests.exceptions", "ConnectTimeout", connection, timeout)
    read_timeout = _fake("requests.exceptions", "ReadTimeout", timeout)
    assert classify(connection()) is TRANSIENT
    assert classify(connect_timeout()) is TIMEOUT
    assert classify(read_timeout()) is TIMEOUT
    assert classify(base()) is UNKNOWN


def test_library_match_needs_the_package_not_a_prefix_of_its_name() -> None:
    assert classify(_fake("httpx_extras", "TransportError")()) is UNKNOWN
    assert classify(_fake("myapp.httpx", "TransportError")()) is UNKNOWN
    assert classify(_fake("aiohttp", "ClientConnectionError")()) is TRANSIENT


# --- Retry-After ----------------------------------------------------------------------------


def _with_headers(headers: object, *, on_response: bool = True) -> Exception:
    exc = Exception("http error")
    if on_response:
        exc.response = SimpleNamespace(headers=headers)  # type: ignore[attr-defined]
    else:
        exc.headers = headers  # type: ignore[attr-defined]
    return exc


@pytest.mark.parametrize("on_response", [True, False])
@pytest.mark.parametrize("name", ["Retry-After", "retry-after", "RETRY-AFTER", "rEtRy-AfTeR"])
def test_retry_after_header_is_case_insensitive(name: str, on_response: bool) -> None:
    assert retry_after(_with_headers({name: "5"}, on_response=on_response)) == 5.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0", 0.0), ("5", 5.0), ("1.5", 1.5), (" 3 ", 3.0), (b"4", 4.0), ("120", 120.0)],
)
def test_retry_after_delta_seconds(value: object, expected: float) -> None:
    assert retry_after(_with_headers({"Retry-After": value})) == expected


def test_retry_after_on_case_insensitive_header_objects() -> None:
    message = email.message.Message()
    message["retry-after"] = "11"
    assert retry_after(_with_headers(message, on_response=False)) == 11.0
    assert retry_after(_with_headers(httpx.Headers({"retry-after": "12"}))) == 12.0
    assert retry_after(_with_headers({b"Retry-After": b"13"})) == 13.0


def test_retry_after_http_date_in_the_past_is_zero() -> None:
    exc = _with_headers({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
    assert retry_after(exc) == 0.0
    asctime = _with_headers({"Retry-After": "Sun Nov  6 08:49:37 1994"})
    assert retry_after(asctime) == 0.0


def test_retry_after_http_date_in_the_future() -> None:
    when = datetime.now(UTC) + timedelta(seconds=120)
    hint = retry_after(_with_headers({"Retry-After": format_datetime(when, usegmt=True)}))
    assert hint is not None
    assert 118.0 <= hint <= 121.0


@pytest.mark.parametrize(
    "value",
    [
        "",
        "soon",
        "-5",
        "-0.5",
        "nan",
        "NaN",
        "inf",
        "Infinity",
        "1e3",
        "1_000",
        "5 seconds",
        "0x10",
        "1" * 400,
        "Wed, 99 Oct 2015 07:28:00 GMT",
        "\u0665",
        None,
        object(),
        [],
    ],
)
def test_malformed_retry_after_header_is_none(value: object) -> None:
    assert retry_after(_with_headers({"Retry-After": value})) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (2, 2.0),
        (2.5, 2.5),
        (0, 0.0),
        (timedelta(seconds=3), 3.0),
        (timedelta(milliseconds=250), 0.25),
        ("7", 7.0),
    ],
)
def test_retry_after_attribute(value: object, expected: float) -> None:
    exc = Exception()
    exc.retry_after = value  # type: ignore[attr-defined]
    assert retry_after(exc) == expected


@pytest.mark.parametrize(
    "value", [-1, -0.1, math.nan, math.inf, -math.inf, timedelta(seconds=-1), True, None, "x"]
)
def test_unusable_retry_after_attribute_is_none(value: object) -> None:
    exc = Exception()
    exc.retry_after = value  # type: ignore[attr-defined]
    assert retry_after(exc) is None


def test_retry_after_attribute_wins_over_the_header() -> None:
    exc = _with_headers({"Retry-After": "50"})
    exc.retry_after = 1.0  # type: ignore[attr-defined]
    assert retry_after(exc) == 1.0
    exc.retry_after = None  # type: ignore[attr-defined]
    assert retry_after(exc) == 50.0
    exc.retry_after = -3  # type: ignore[attr-defined]
    assert retry_after(exc) == 50.0


def test_retry_after_of_the_librarys_errors() -> None:
    assert retry_after(CircuitOpenError("db", 4.0)) == 4.0
    assert retry_after(RateLimitedError("api", 0.25)) == 0.25
    assert retry_after(RateLimitedError("api", None)) is None
    assert retry_after(ValueError()) is None


def test_retry_after_of_a_real_httpx_error() -> None:
    assert retry_after(_httpx_status_error(429, {"Retry-After": "17"})) == 17.0
    assert retry_after(_httpx_status_error(429)) is None


def test_retry_after_never_raises_on_hostile_headers() -> None:
    class Hostile:
        def get(self, name: str) -> object:
            raise RuntimeError("boom")

    class HostileItems:
        def items(self) -> object:
            raise RuntimeError("boom")

    assert retry_after(_with_headers(Hostile())) is None
    assert retry_after(_with_headers(HostileItems())) is None
    assert retry_after(_with_headers(42)) is None
    assert classify(_StatusCodeError(503, headers=Hostile())) is TRANSIENT


# --- Registration ---------------------------------------------------------------------------


class _Base(Exception):
    pass


class _Child(_Base):
    pass


class _GrandChild(_Child):
    pass


class _Other(Exception):
    pass


def test_register_a_type_covers_its_subclasses() -> None:
    classifier = Classifier()
    classifier.register(_Base, TRANSIENT)
    assert classifier.classify(_GrandChild()) is TRANSIENT
    assert classifier.classify(_Other()) is UNKNOWN
    assert classify(_GrandChild()) is UNKNOWN  # the process default is untouched


def test_register_a_tuple() -> None:
    classifier = Classifier()
    classifier.register((_Child, _Other), THROTTLED)
    assert classifier.classify(_Child()) is THROTTLED
    assert classifier.classify(_Other()) is THROTTLED
    assert classifier.classify(_Base()) is UNKNOWN


def test_later_registration_wins_whatever_the_specificity() -> None:
    classifier = Classifier()
    classifier.register(_Child, PERMANENT)
    classifier.register(_Base, TIMEOUT)
    assert classifier.classify(_Child()) is TIMEOUT
    classifier.register(_Child, THROTTLED)
    assert classifier.classify(_Child()) is THROTTLED
    assert classifier.classify(_Base()) is TIMEOUT


def test_user_rules_beat_every_default() -> None:
    classifier = Classifier()
    classifier.register(TimeoutError, PERMANENT)
    classifier.register(ConnectionError, UNKNOWN)
    classifier.register(ValueError, TRANSIENT)
    classifier.register(_StatusCodeError, TRANSIENT)
    classifier.register(asyncio.CancelledError, TRANSIENT)
    assert classifier.classify(DeadlineExceeded(1.0)) is PERMANENT
    assert classifier.classify(ConnectionResetError()) is UNKNOWN
    assert classifier.classify(ValueError()) is TRANSIENT
    assert classifier.classify(_StatusCodeError(404)) is TRANSIENT
    assert classifier.classify(asyncio.CancelledError()) is TRANSIENT
    # ...but no compiled matcher catches cancellation, whatever the classifier says.
    with use_classifier(classifier):
        assert not compile_on(TRANSIENT, default=ValueError)(asyncio.CancelledError())


def test_predicate_rules() -> None:
    calls: list[BaseException] = []

    def is_flaky(exc: BaseException) -> bool:
        calls.append(exc)
        return "flaky" in str(exc)

    classifier = Classifier()
    classifier.register(is_flaky, TRANSIENT)
    flaky, solid = RuntimeError("flaky db"), RuntimeError("solid")
    # The predicate is asked on every call, not cached per type.
    assert classifier.classify(flaky) is TRANSIENT
    assert classifier.classify(solid) is UNKNOWN
    assert classifier.classify(flaky) is TRANSIENT
    assert calls == [flaky, solid, flaky]
    assert classifier.classify(ValueError("flaky")) is TRANSIENT


def test_predicate_and_type_rules_interleave_by_order() -> None:
    classifier = Classifier()
    classifier.register(lambda exc: True, THROTTLED)
    classifier.register(_Base, PERMANENT)
    assert classifier.classify(_Base()) is PERMANENT
    assert classifier.classify(_Other()) is THROTTLED
    classifier.register(lambda exc: "x" in str(exc), TIMEOUT)
    assert classifier.classify(_Base("x")) is TIMEOUT
    assert classifier.classify(_Base("y")) is PERMANENT


def test_a_raising_predicate_propagates() -> None:
    def broken(exc: BaseException) -> bool:
        raise LookupError("predicate bug")

    classifier = Classifier()
    classifier.register(broken, TRANSIENT)
    with pytest.raises(LookupError, match="predicate bug"):
        classifier.classify(ValueError())


def test_register_invalidates_the_cache() -> None:
    classifier = Classifier()
    assert classifier.classify(ValueError()) is PERMANENT
    assert classifier.classify(ValueError()) is PERMANENT
    classifier.register(ValueError, TRANSIENT)
    assert classifier.classify(ValueError()) is TRANSIENT
    classifier.register(lambda exc: isinstance(exc, ValueError), TIMEOUT)
    assert classifier.classify(ValueError()) is TIMEOUT


def test_type_rules_are_evaluated_once_per_type() -> None:
    checks: list[type] = []

    class CountingMeta(type):
        def __subclasscheck__(cls, subclass: type) -> bool:
            checks.append(subclass)
            return super().__subclasscheck__(subclass)

    class Marker(Exception, metaclass=CountingMeta):
        pass

    classifier = Classifier()
    classifier.register(Marker, TRANSIENT)
    for _ in range(5):
        assert classifier.classify(RuntimeError()) is UNKNOWN
    assert checks == [RuntimeError]
    classifier.register(_Other, TIMEOUT)
    assert classifier.classify(RuntimeError()) is UNKNOWN
    assert checks == [RuntimeError, RuntimeError]


def test_many_exception_types_stay_correct_past_the_cache_bound() -> None:
    classifier = Classifier()
    classifier.register(_Base, TRANSIENT)
    types = [type(f"E{i}", (_Base if i % 2 else Exception,), {}) for i in range(3000)]
    for i, cls in enumerate(types):
        assert classifier.classify(cls()) is (TRANSIENT if i % 2 else UNKNOWN)


def test_copy_is_independent() -> None:
    original = Classifier()
    original.register(_Base, TRANSIENT)
    clone = original.copy()
    assert clone.classify(_Base()) is TRANSIENT
    clone.register(_Base, PERMANENT)
    original.register(_Other, TIMEOUT)
    assert original.classify(_Base()) is TRANSIENT
    assert clone.classify(_Base()) is PERMANENT
    assert clone.classify(_Other()) is UNKNOWN
    assert copy.copy(original).classify(_Other()) is TIMEOUT


def test_repr_counts_user_rules() -> None:
    classifier = Classifier()
    assert "0 user rules" in repr(classifier)
    classifier.register(_Base, TRANSIENT)
    assert "1 user rule>" in repr(classifier)


@pytest.mark.parametrize(
    "matcher", [int, "ValueError", 42, None, (ValueError, 3), (ValueError, int), [ValueError]]
)
def test_register_rejects_bad_matchers(matcher: Any) -> None:
    with pytest.raises(TypeError, match="matcher") as info:
        Classifier().register(matcher, TRANSIENT)
    assert "exception type" in str(info.value)
    assert "predicate" in str(info.value)


def test_register_rejects_an_empty_tuple() -> None:
    with pytest.raises(ValueError, match="matcher must not be an empty tuple"):
        Classifier().register((), TRANSIENT)


@pytest.mark.parametrize("error_class", ["transient", None, 1, ValueError])
def test_register_rejects_bad_error_classes(error_class: Any) -> None:
    classifier = Classifier()
    with pytest.raises(TypeError, match="error_class must be an ErrorClass"):
        classifier.register(ValueError, error_class)
    assert classifier.classify(ValueError()) is PERMANENT


_POOL = [_Base, _Child, _GrandChild, _Other, Exception, ValueError, ConnectionError]
_CLASSES = [c for c in ErrorClass if c is not ErrorClass.CANCELLED]  # reserved


@settings(database=None, max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(_POOL), st.sampled_from(_CLASSES)), max_size=12),
    st.lists(st.booleans(), min_size=12, max_size=12),
)
def test_later_registration_wins_property(
    registrations: list[tuple[type[Exception], ErrorClass]], probe_after: list[bool]
) -> None:
    classifier = Classifier()
    done: list[tuple[type[Exception], ErrorClass]] = []
    for (matcher, error_class), probe in zip(registrations, probe_after, strict=False):
        if probe:  # warm the cache so that register must invalidate it
            for cls in _POOL:
                classifier.classify(cls())
        classifier.register(matcher, error_class)
        done.append((matcher, error_class))
    for cls in _POOL:
        expected = next(
            (error_class for matcher, error_class in reversed(done) if issubclass(cls, matcher)),
            Classifier().classify(cls()),
        )
        assert classifier.classify(cls()) is expected


def test_classify_is_consistent_while_another_thread_registers() -> None:
    classifier = Classifier()
    stop = threading.Event()
    seen: set[ErrorClass] = set()
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            while not stop.is_set():
                seen.add(classifier.classify(_Child()))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        for i in range(300):
            classifier.register(_Base if i % 2 else _Other, TRANSIENT if i % 2 else PERMANENT)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not errors
    assert seen <= {UNKNOWN, TRANSIENT}
    assert classifier.classify(_Child()) is TRANSIENT


# --- The current classifier -----------------------------------------------------------------


def _marking(error_class: ErrorClass) -> Classifier:
    classifier = Classifier()
    classifier.register(_Base, error_class)
    return classifier


def test_set_classifier_changes_the_process_default() -> None:
    custom = _marking(THROTTLED)
    assert classify(_Base()) is UNKNOWN
    set_classifier(custom)
    assert get_classifier() is custom
    assert classify(_Base()) is THROTTLED


def test_set_classifier_rejects_other_objects() -> None:
    with pytest.raises(TypeError, match="classifier must be a Classifier"):
        set_classifier(object())  # type: ignore[arg-type]


def test_use_classifier_scopes_and_nests() -> None:
    outer, inner = _marking(TRANSIENT), _marking(PERMANENT)
    default = get_classifier()
    with use_classifier(outer) as entered:
        assert entered is outer
        assert get_classifier() is outer
        assert classify(_Base()) is TRANSIENT
        with use_classifier(inner):
            assert classify(_Base()) is PERMANENT
        assert classify(_Base()) is TRANSIENT
    assert get_classifier() is default
    assert classify(_Base()) is UNKNOWN


def test_use_classifier_restores_on_error() -> None:
    with pytest.raises(KeyError), use_classifier(_marking(TRANSIENT)):
        raise KeyError("boom")
    assert classify(_Base()) is UNKNOWN


def test_use_classifier_wins_over_a_later_set_classifier() -> None:
    scoped, process = _marking(TRANSIENT), _marking(TIMEOUT)
    with use_classifier(scoped):
        set_classifier(process)
        assert classify(_Base()) is TRANSIENT
    assert classify(_Base()) is TIMEOUT


def test_use_classifier_rejects_other_objects() -> None:
    with pytest.raises(TypeError, match="classifier must be a Classifier"):
        use_classifier("strict")  # type: ignore[arg-type]


def test_use_classifier_does_not_leak_into_other_threads() -> None:
    seen: list[ErrorClass] = []
    with use_classifier(_marking(TRANSIENT)):
        thread = threading.Thread(target=lambda: seen.append(classify(_Base())))
        thread.start()
        thread.join()
    assert seen == [UNKNOWN]


@pytest.mark.anyio
async def test_use_classifier_in_async_code_and_child_tasks() -> None:
    seen: dict[str, ErrorClass] = {}

    async def child() -> None:
        await anyio.sleep(0.1)
        seen["child"] = classify(_Base())
        with use_classifier(_marking(PERMANENT)):
            await anyio.sleep(0)
            seen["child inner"] = classify(_Base())

    with use_classifier(_marking(TRANSIENT)):
        async with anyio.create_task_group() as tg:
            tg.start_soon(child)
            await anyio.sleep(0.2)
            seen["parent"] = classify(_Base())
        await anyio.sleep(0)
        seen["after"] = classify(_Base())
    seen["outside"] = classify(_Base())
    assert seen == {
        "child": TRANSIENT,
        "child inner": PERMANENT,
        "parent": TRANSIENT,
        "after": TRANSIENT,
        "outside": UNKNOWN,
    }


@pytest.mark.anyio
async def test_a_child_started_outside_the_block_does_not_see_it() -> None:
    seen: list[ErrorClass] = []
    entered = anyio.Event()

    async def child() -> None:
        await entered.wait()
        seen.append(classify(_Base()))

    async with anyio.create_task_group() as tg:
        tg.start_soon(child)
        with use_classifier(_marking(TRANSIENT)):
            entered.set()
            await anyio.sleep(0.1)
    assert seen == [UNKNOWN]


# --- compile_on -----------------------------------------------------------------------------


def test_default_sentinel() -> None:
    assert repr(DEFAULT) == "DEFAULT"
    assert str(DEFAULT) == "DEFAULT"
    assert DEFAULT is DefaultType.DEFAULT
    assert copy.copy(DEFAULT) is DEFAULT
    assert pickle.loads(pickle.dumps(DEFAULT)) is DEFAULT


def test_default_uses_the_policys_default() -> None:
    matches = compile_on(DEFAULT, default={TRANSIENT, TIMEOUT})
    assert matches(ConnectionResetError())
    assert matches(DeadlineExceeded(1.0))
    assert not matches(ValueError())
    explicit = compile_on(ValueError, default={TRANSIENT, TIMEOUT})
    assert explicit(ValueError())
    assert not explicit(ConnectionResetError())


def test_on_a_type() -> None:
    matches = compile_on(_Base, default=ValueError)
    assert matches(_Base())
    assert matches(_GrandChild())
    assert not matches(_Other())
    assert matches(_GrandChild()) is True


def test_on_a_tuple() -> None:
    matches = compile_on((_Child, _Other), default=ValueError)
    assert matches(_GrandChild())
    assert matches(_Other())
    assert not matches(_Base())


def test_on_base_exception_matches_every_exception() -> None:
    matches = compile_on(BaseException, default=ValueError)
    assert matches(RuntimeError())
    assert matches(ExceptionGroup("g", [ValueError()]))


def test_on_an_error_class() -> None:
    matches = compile_on(TRANSIENT, default=ValueError)
    assert matches(ConnectionResetError())
    assert not matches(TimeoutError())
    assert not matches(_Base())


@pytest.mark.parametrize("kind", [set, frozenset, lambda items: dict.fromkeys(items).keys()])
def test_on_a_set_of_error_classes(kind: Callable[[list[ErrorClass]], Any]) -> None:
    matches = compile_on(kind([TRANSIENT, THROTTLED]), default=ValueError)
    assert matches(ConnectionResetError())
    assert matches(RateLimitedError("api", 1.0))
    assert not matches(ValueError())
    assert not matches(TimeoutError())
    single = compile_on(kind([PERMANENT]), default=ValueError)
    assert single(KeyError())
    assert not single(ConnectionError())


def test_class_matchers_use_the_current_classifier_at_match_time() -> None:
    by_class = compile_on(TRANSIENT, default=ValueError)
    by_set = compile_on({TRANSIENT, TIMEOUT}, default=ValueError)
    assert not by_class(_Base())
    assert not by_set(_Base())
    with use_classifier(_marking(TRANSIENT)):
        assert by_class(_Base())
        assert by_set(_Base())
    set_classifier(_marking(TIMEOUT))
    assert not by_class(_Base())
    assert by_set(_Base())


def test_on_a_predicate() -> None:
    seen: list[BaseException] = []

    def predicate(exc: BaseException) -> bool:
        seen.append(exc)
        return "retry me" in str(exc)

    matches = compile_on(predicate, default=ValueError)
    hit, miss = RuntimeError("retry me"), RuntimeError("no")
    assert matches(hit) is True
    assert matches(miss) is False
    assert seen == [hit, miss]


def test_truthy_predicate_results_become_bools() -> None:
    matches = compile_on(lambda exc: [exc], default=ValueError)  # type: ignore[arg-type]
    assert matches(ValueError()) is True


STOP_SIGNALS: list[BaseException] = [
    asyncio.CancelledError(),
    KeyboardInterrupt(),
    SystemExit(1),
    GeneratorExit(),
    BaseExceptionGroup("g", [asyncio.CancelledError()]),
    BaseExceptionGroup("g", [ValueError(), KeyboardInterrupt()]),
]


@pytest.mark.parametrize("stop", STOP_SIGNALS, ids=_id)
@pytest.mark.parametrize(
    "on",
    [
        BaseException,
        (BaseException,),
        (ValueError, BaseException),
        BaseExceptionGroup,
        UNKNOWN,
        TRANSIENT,
        {TRANSIENT, THROTTLED, TIMEOUT, PERMANENT, UNKNOWN},
        lambda exc: True,
    ],
    ids=_id,
)
def test_compiled_matchers_never_match_stop_signals(stop: BaseException, on: Any) -> None:
    everything = Classifier()
    everything.register(lambda exc: True, TRANSIENT)
    matches = compile_on(on, default=ValueError)
    assert not matches(stop)
    with use_classifier(everything):
        assert not matches(stop)


def test_predicates_are_not_even_called_for_stop_signals() -> None:
    calls: list[BaseException] = []

    def always(exc: BaseException) -> bool:
        calls.append(exc)
        return True

    matches = compile_on(always, default=ValueError)
    assert matches(RuntimeError())
    calls.clear()
    for stop in STOP_SIGNALS:
        assert not matches(stop)
    assert calls == []


@pytest.mark.parametrize("param", ["on", "retry_on", "failure_on"])
@pytest.mark.parametrize(
    ("on", "error", "message"),
    [
        (int, TypeError, "not an exception type"),
        ((ValueError, int), TypeError, "in the tuple is not an exception type"),
        ((ValueError, "KeyError"), TypeError, "in the tuple is not an exception type"),
        ((), ValueError, "must not be an empty tuple"),
        (set(), ValueError, "must not be an empty set"),
        (frozenset(), ValueError, "must not be an empty set"),
        ({TRANSIENT, "timeout"}, TypeError, "not an ErrorClass"),
        ({ValueError}, TypeError, "use a tuple for exception types"),
        ({TRANSIENT, CANCELLED}, ValueError, "cancellation is never matched"),
        (CANCELLED, ValueError, "cancellation is never matched"),
        ("transient", TypeError, "use ErrorClass members, not strings"),
        (None, TypeError, "predicate"),
        (42, TypeError, "predicate"),
        ([ValueError], TypeError, "tuple of exception types"),
        (asyncio.CancelledError, ValueError, "never matched"),
        (KeyboardInterrupt, ValueError, "never matched"),
        (SystemExit, ValueError, "never matched"),
        (GeneratorExit, ValueError, "never matched"),
        ((ValueError, trio.Cancelled), ValueError, "never matched"),
    ],
    ids=_id,
)
def test_compile_on_rejections(on: Any, error: type[Exception], message: str, param: str) -> None:
    with pytest.raises(error) as info:
        compile_on(on, default=ValueError, param=param)
    text = str(info.value)
    assert text.startswith(param), text
    assert message in text


def test_compile_on_lists_the_accepted_kinds() -> None:
    with pytest.raises(TypeError) as info:
        compile_on(3.5, default=ValueError)  # type: ignore[arg-type]
    text = str(info.value)
    for kind in ("exception type", "tuple of exception types", "ErrorClass", "set", "predicate"):
        assert kind in text


def test_an_invalid_default_is_rejected_too() -> None:
    with pytest.raises(ValueError, match="cancellation is never matched"):
        compile_on(DEFAULT, default={CANCELLED})
    # An explicit on= never looks at the default.
    assert compile_on(ValueError, default={CANCELLED})(ValueError())


def test_concurrent_futures_cancelled_error_can_be_matched_by_type() -> None:
    # It is an Exception, so only a class-based matcher keeps away from it.
    exc = concurrent.futures.CancelledError()
    assert compile_on(concurrent.futures.CancelledError, default=ValueError)(exc)
    assert not compile_on({TRANSIENT, TIMEOUT, UNKNOWN}, default=ValueError)(exc)


def test_retry_after_fast_path_still_sees_every_source_of_a_hint() -> None:
    class WithProperty(Exception):
        @property
        def retry_after(self) -> float:
            return 4.0

    class Plain(Exception):
        pass

    late = Plain()
    late.headers = {"Retry-After": "7"}  # type: ignore[attr-defined]
    unrelated = Plain()
    unrelated.code = 503  # type: ignore[attr-defined]
    assert retry_after(WithProperty()) == 4.0
    assert retry_after(late) == 7.0
    assert retry_after(unrelated) is None
    assert retry_after(Plain()) is None


# --- attributes from the class, or computed: the per-class shortcuts must not skip them ----


class _ComputedAttributes(Exception):
    """An error whose status and hint come from `__getattr__`, not from its `__dict__`."""

    def __getattr__(self, name: str) -> object:
        if name == "status_code":
            return 503
        if name == "retry_after":
            return 4.0
        raise AttributeError(name)


class _ClassAttributes(Exception):
    """An error whose status and hint are properties of its class."""

    @property
    def status_code(self) -> int:
        return 429

    @property
    def retry_after(self) -> float:
        return 2.5


@pytest.mark.parametrize("rounds", [1, 2])  # the second round reads the per-class caches
def test_status_and_hint_from_the_class_or_computed_are_read(rounds: int) -> None:
    for _ in range(rounds):
        assert retry_after(_ComputedAttributes()) == 4.0
        assert classify(_ComputedAttributes()) is THROTTLED  # a 503 with a hint
        assert retry_after(_ClassAttributes()) == 2.5
        assert classify(_ClassAttributes()) is THROTTLED
        plain = ConnectionError("reset")
        assert retry_after(plain) is None
        assert classify(plain) is TRANSIENT
        plain.status_code = 404  # type: ignore[attr-defined]
        plain.retry_after = 1.5  # type: ignore[attr-defined]
        assert classify(plain) is PERMANENT
        assert retry_after(plain) == 1.5
