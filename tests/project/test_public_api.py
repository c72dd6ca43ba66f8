"""The public surface: names of API.md, sorted and complete `__all__`, docstrings, sync twin."""

from __future__ import annotations

import inspect

import pytest

import resilient_async as ra
import resilient_async.sync as ra_sync

API_NAMES = {
    "BreakerState", "BulkheadFullError", "Bulkhead", "CircuitBreaker", "CircuitOpenError",
    "Classifier", "CompensationError", "DeadlineExceeded", "ErrorClass", "Fallback", "Hedge",
    "RateLimitedError", "RateLimiter", "ResilienceError", "Retry", "RetryBudget",
    "Supervisor", "SupervisorGaveUp", "Timeout", "backoff", "classify", "context_of",
    "current_context", "current_deadline", "deadline", "deadline_at", "degraded", "error_context",
    "install_exception_handler", "instrumentation",
    "pipeline", "remaining", "retry", "retry_after", "set_classifier", "stores", "use_classifier",
    "Transaction", "SQLiteJournal", "compensation", "recover",
}  # fmt: skip
SYNC_NAMES = {
    "Retry", "retry", "CircuitBreaker", "Bulkhead", "RateLimiter", "Timeout", "deadline",
    "Fallback", "pipeline", "classify", "error_context", "backoff", "DeadlineExceeded",
    "ResilienceError", "CircuitOpenError", "BulkheadFullError", "RateLimitedError",
    "Transaction", "CompensationError",
}  # fmt: skip
ASYNC_ONLY = {
    "ChildInfo", "ChildState", "ExceptionHandler", "Hedge", "Supervisor", "SupervisorGaveUp",
    "get_classifier", "install_exception_handler", "instrumentation", "run_reported", "stores",
}  # fmt: skip


@pytest.mark.parametrize("module", [ra, ra_sync], ids=["async", "sync"])
def test_all_is_sorted_complete_and_documented(module: object) -> None:
    names = module.__all__  # type: ignore[attr-defined]
    assert names == sorted(names)
    for name in names:
        value = getattr(module, name)
        assert inspect.getdoc(value), f"{name} has no docstring"


def test_the_api_contract_names_are_exported() -> None:
    assert set(ra.__all__) >= API_NAMES
    assert set(ra_sync.__all__) >= SYNC_NAMES


def test_sync_twin_mirrors_the_async_names() -> None:
    # The sync RedisStore is exported at the top of the twin (the async one is in `stores`).
    assert set(ra.__all__) - ASYNC_ONLY == set(ra_sync.__all__) - ASYNC_ONLY - {"RedisStore"}
    for name in (
        "Retry", "CircuitBreaker", "Bulkhead", "RateLimiter", "Timeout", "Fallback", "Transaction"
    ):  # fmt: skip
        async_sig = inspect.signature(getattr(ra, name))
        sync_sig = inspect.signature(getattr(ra_sync, name))
        assert list(async_sig.parameters) == list(sync_sig.parameters), name
        assert getattr(ra, name) is not getattr(ra_sync, name)


def test_policies_can_be_built_at_import_time_without_a_loop() -> None:
    policies = [
        ra.Retry(),
        ra.CircuitBreaker("x"),
        ra.Bulkhead(1),
        ra.RateLimiter(1),
        ra.Timeout(1),
        ra.Fallback(None),
        ra.Hedge(0.1),
        ra.pipeline(ra.Retry(), ra.Timeout(1)),
        ra.RetryBudget(),
    ]
    assert all(p is not None for p in policies)
    assert ra.CircuitBreaker("y").state is ra.BreakerState.CLOSED


def test_errors_are_builtin_compatible() -> None:
    assert issubclass(ra.DeadlineExceeded, TimeoutError)
    assert issubclass(ra.CompensationError, ExceptionGroup)
    assert issubclass(ra.SupervisorGaveUp, ExceptionGroup)
    for error in (ra.CircuitOpenError, ra.BulkheadFullError, ra.RateLimitedError):
        assert issubclass(error, ra.ResilienceError)


def test_every_policy_reports_its_name_and_own_hooks_through_one_base() -> None:
    def hook(event: object) -> None:
        return None

    for flavour in (ra, ra_sync):
        for policy in (
            flavour.Retry(name="p", hooks=[hook]),
            flavour.CircuitBreaker("p", hooks=[hook]),
            flavour.Bulkhead(1, name="p", hooks=[hook]),
            flavour.RateLimiter(1, name="p", hooks=[hook]),
            flavour.Timeout(1, name="p", hooks=[hook]),
            flavour.Fallback(value=0, name="p", hooks=[hook]),
        ):
            assert (policy.name, policy.hooks) == ("p", (hook,)), policy
        assert flavour.pipeline(flavour.Retry(), hooks=[hook]).hooks == (hook,)
    assert (ra.Hedge(0.1, name="p").name, ra.Hedge(0.1).hooks) == ("p", ())

    class Custom(ra.Policy):  # a user's own policy keeps these names for itself
        def __init__(self, name: str) -> None:
            self.name = name
            self.hooks = "mine"

        async def call(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
            return await fn(*args, **kwargs)

    assert (Custom("c").name, Custom("c").hooks) == ("c", "mine")
