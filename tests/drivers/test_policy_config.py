"""Every policy checks its `name` the same way, and its configuration is read-only (issue #14)."""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import pytest

import resilient_async as ra
import resilient_async.sync as rs
from resilient_async.stores import MemoryStore

Build = Callable[[Any], object]


def _builders(api: Any) -> dict[str, Build]:
    builders: dict[str, Build] = {
        "Retry": lambda name: api.Retry(name=name),
        "CircuitBreaker": api.CircuitBreaker,
        "CircuitBreaker(name=)": lambda name: api.CircuitBreaker(name=name),
        "CircuitBreaker(store=)": lambda name: api.CircuitBreaker(name, store=MemoryStore()),
        "Bulkhead": lambda name: api.Bulkhead(2, name=name),
        "Bulkhead.adaptive": lambda name: api.Bulkhead.adaptive(name=name),
        "Bulkhead.per_key": lambda name: api.Bulkhead.per_key(2, name=name),
        "KeyedBulkhead": lambda name: api.KeyedBulkhead(2, name=name),
        "RateLimiter": lambda name: api.RateLimiter(5, name=name),
        "RateLimiter(store=)": lambda name: api.RateLimiter(5, name=name, store=MemoryStore()),
        "RateLimiter.per_key": lambda name: api.RateLimiter.per_key(5, name=name),
        "KeyedRateLimiter": lambda name: api.KeyedRateLimiter(5, name=name),
        "Timeout": lambda name: api.Timeout(1, name=name),
        "Fallback": lambda name: api.Fallback(None, name=name),
        "RetryBudget": lambda name: api.RetryBudget(name=name),
        "RetryBudget(store=)": lambda name: api.RetryBudget(name=name, store=MemoryStore()),
        "Transaction": api.Transaction,
    }
    if api is ra:
        builders["Hedge"] = lambda name: api.Hedge(0.1, name=name)
        builders["Supervisor"] = lambda name: api.Supervisor(name=name)
    return builders


CASES = [
    pytest.param(build, id=f"{'async' if api is ra else 'sync'}-{label}")
    for api in (ra, rs)
    for label, build in _builders(api).items()
]


@pytest.mark.parametrize("build", CASES)
@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        ("", ValueError, "name must be a non-empty str or None, got ''"),
        ("   ", ValueError, "name must be a non-empty str or None, got '   '"),
        (42, TypeError, "name must be a str or None, got 42"),
        (b"db", TypeError, "name must be a str or None, got b'db'"),
    ],
)
def test_every_constructor_checks_name_with_the_same_error(
    build: Build, bad: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as caught:
        build(bad)
    assert str(caught.value) == message


@pytest.mark.parametrize("build", CASES)
def test_a_valid_name_is_kept(build: Build) -> None:
    assert getattr(build("payments"), "name") == "payments"


@pytest.mark.parametrize("build", [case for case in CASES if "store=" not in str(case.id)])
def test_no_name_is_none_without_a_store(build: Build) -> None:
    assert getattr(build(None), "name") is None


def _public_settings(obj: object) -> list[str]:
    """Every public attribute that is not a method: the configuration a user can read."""
    names = []
    for name in dir(obj):
        if name.startswith("_"):
            continue
        value = getattr(obj, name)
        if isinstance(value, types.MethodType | types.BuiltinMethodType | types.FunctionType):
            continue
        names.append(name)
    return names


@pytest.mark.parametrize("build", CASES)
def test_configuration_is_read_only(build: Build) -> None:
    policy = build("payments")
    settings = _public_settings(policy)
    assert "name" in settings
    for name in settings:
        with pytest.raises(AttributeError):
            setattr(policy, name, getattr(policy, name))
    with pytest.raises(AttributeError):
        policy.name = "other"  # type: ignore[attr-defined]
    assert getattr(policy, "name") == "payments"
