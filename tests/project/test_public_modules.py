"""Public objects report the module users import them from, and still pickle (issue #14)."""

from __future__ import annotations

import importlib
import inspect
import pickle
import subprocess
import sys
import types
from typing import Any

import pytest

import resilient_async as ra
import resilient_async.sync as rs
from resilient_async.classify import DEFAULT

PUBLIC_MODULES = [
    "resilient_async",
    "resilient_async.sync",
    "resilient_async.classify",
    "resilient_async.stores",
    "resilient_async.instrumentation",
    "resilient_async.integrations.httpx",
    "resilient_async.testing",
]


def _public_objects(module_name: str) -> list[tuple[str, Any]]:
    module = importlib.import_module(module_name)
    found = [(name, getattr(module, name)) for name in module.__all__]
    return [(name, obj) for name, obj in found if isinstance(obj, type | types.FunctionType)]


def _owner(obj: Any) -> str:
    """The public module an object must report: the first namespace that exports it."""
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        if any(getattr(module, name) is obj for name in module.__all__):
            return module_name
    raise AssertionError(f"{obj!r} is exported nowhere")


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_public_class_and_function_reports_its_public_module(module_name: str) -> None:
    for name, obj in _public_objects(module_name):
        assert obj.__qualname__ == name
        assert obj.__module__ == _owner(obj), name
        # What pickle does: the reported module and qualname lead back to the object.
        assert getattr(importlib.import_module(obj.__module__), obj.__qualname__) is obj


def test_the_async_and_sync_apis_report_their_own_module() -> None:
    for name, obj in _public_objects("resilient_async"):
        assert obj.__module__ == "resilient_async", name
    own = {"resilient_async.sync"}
    for name, obj in _public_objects("resilient_async.sync"):
        shared = getattr(ra, name, None) is obj
        assert obj.__module__ == ("resilient_async" if shared else "resilient_async.sync"), name
        if inspect.isclass(obj) and not shared:
            own.add(name)
    assert {"Retry", "CircuitBreaker", "Bulkhead", "Timeout", "RedisStore"} <= own
    assert repr(ra.Retry) == "<class 'resilient_async.Retry'>"
    assert repr(rs.Retry) == "<class 'resilient_async.sync.Retry'>"


def test_nested_classes_and_methods_move_with_their_class() -> None:
    assert ra.Retry.call.__module__ == "resilient_async"
    assert ra.Retry.call.__qualname__ == "Retry.call"
    assert ra.Bulkhead.adaptive.__module__ == "resilient_async"  # a staticmethod's function
    assert rs.Retry.call.__module__ == "resilient_async.sync"


def test_objects_only_a_private_module_defines_are_left_alone() -> None:
    from resilient_async._async.policy import MUST_WAIT
    from resilient_async.context import PreparedFields

    assert type(MUST_WAIT).__module__ == "resilient_async._async.policy"
    assert PreparedFields.__module__ == "resilient_async.context"


def test_a_raised_error_round_trips_through_pickle() -> None:
    with pytest.raises(ra.CircuitOpenError) as caught:
        raise ra.CircuitOpenError("payments", 2.0)
    data = pickle.dumps(caught.value)
    assert b"resilient_async.errors" not in data  # pickled under its public name
    copy = pickle.loads(data)
    assert type(copy) is ra.CircuitOpenError
    assert (copy.breaker, copy.retry_after) == ("payments", 2.0)
    assert pickle.loads(pickle.dumps(ra.ErrorClass.THROTTLED)) is ra.ErrorClass.THROTTLED
    assert pickle.loads(pickle.dumps(ra.BreakerState.OPEN)) is ra.BreakerState.OPEN
    assert pickle.loads(pickle.dumps(DEFAULT)) is DEFAULT


def test_a_pickled_error_loads_in_a_fresh_process() -> None:
    data = pickle.dumps(ra.DeadlineExceeded(1.5))
    code = (
        "import pickle, sys\n"
        "error = pickle.loads(sys.stdin.buffer.read())\n"
        "assert type(error).__module__ == 'resilient_async', type(error).__module__\n"
        "assert error.timeout == 1.5, error.timeout\n"
    )
    subprocess.run([sys.executable, "-c", code], input=data, check=True)
