"""Compose policies into one: `pipeline(outermost, ..., innermost)`.

A pipeline is built once. Runs of consecutive guards (circuit breaker, bulkhead, rate
limiter, timeout) are folded into a single driver that enters each guard with a plain method
call and exits them in reverse order, so they cost their own bookkeeping and no coroutine
frame each. Policies that run the call themselves (retry, fallback, hedge, another pipeline,
any custom `Policy`) wrap the inner stages through their `call`. An error leaving the
pipeline carries one merged error context: each policy adds its fields, and a field set
closer to the raise site is never overwritten.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ParamSpec, TypeVar, cast

from .._core.checks import check_hooks
from ..instrumentation import Hook
from ..instrumentation import hooks as scoped_hooks
from . import _backend
from .fallback import Fallback
from .policy import MUST_WAIT, Guard, NamedPolicy, Policy

__all__ = ["Pipeline", "pipeline"]

P = ParamSpec("P")
T = TypeVar("T")


class Pipeline(NamedPolicy):
    """Policies applied as one, outermost first: itself a policy (`call`, decorator).

    Args:
        *policies: The policies, outermost first; at least one.
        hooks: Hooks (callables taking one event) that receive the events of the policies
            in this pipeline, for calls through it (installed like `instrumentation.hooks`
            around each call, so a policy run by the call itself reports to them too).

    Raises:
        TypeError: An argument is not a policy, or is a policy of the other flavour (a sync
            policy in an async pipeline, or the reverse).
        ValueError: No policy was given, or a `Fallback` can never run because a `Fallback`
            inside it already answers every error it would (a value fallback with the default
            `on=` inside another fallback with the default `on=`; a handler can still fail,
            so a handler fallback leaves the outer one reachable).

    Example:
        >>> guarded = pipeline(
        ...     Fallback(value=None),
        ...     Retry(attempts=3),
        ...     CircuitBreaker("db"),
        ...     Bulkhead(10),
        ...     Timeout(2),
        ... )
    """

    __slots__ = ("_hooks", "_name", "_policies", "_stages")

    def __init__(self, *policies: Policy, hooks: Iterable[Hook] = ()) -> None:
        if not policies:
            raise ValueError("pipeline needs at least one policy")
        for index, policy in enumerate(policies):
            if not isinstance(policy, Policy):
                raise TypeError(_not_a_policy(index, policy))
        _check_fallbacks_reachable(policies)
        self._policies: tuple[Policy, ...] = policies
        self._hooks: tuple[Hook, ...] = check_hooks(hooks)
        self._name: str | None = None  # a pipeline names no events of its own
        self._stages = _build_stages(policies)

    @property
    def policies(self) -> tuple[Policy, ...]:
        """The policies, outermost first."""
        return self._policies

    def __repr__(self) -> str:
        return f"Pipeline({', '.join(map(repr, self.policies))})"

    async def call(self, fn: _backend.Fn[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn(*args, **kwargs)` through every policy, outermost first."""
        target: _backend.Fn[..., Any] = fn
        for stage in self._stages:
            target = stage(target)
        if self._hooks:
            with scoped_hooks(*self._hooks):
                return cast(T, await target(*args, **kwargs))
        return cast(T, await target(*args, **kwargs))


def pipeline(*policies: Policy, hooks: Iterable[Hook] = ()) -> Pipeline:
    """Compose `policies`, outermost first, into one `Pipeline`.

    Raises:
        TypeError: An argument is not a policy (or is one of the other flavour).
        ValueError: No policy was given, or a `Fallback` could never run.
    """
    return Pipeline(*policies, hooks=hooks)


def _not_a_policy(index: int, value: object) -> str:
    """Say what is wrong with a pipeline argument that is not a policy of this flavour."""
    other = [k for k in type(value).__mro__ if k.__name__ == "Policy" and k is not Policy]
    if other:
        this, that = ("async", "sync") if _backend.IS_ASYNC else ("sync", "async")
        home = "resilient_async" if _backend.IS_ASYNC else "resilient_async.sync"
        return (
            f"pipeline argument {index} is {value!r}, a {that} policy, in a {this} pipeline: "
            f"use the {this} policies from {home} (every policy of a pipeline has the "
            "pipeline's flavour)"
        )
    return (
        f"pipeline argument {index} must be a policy (Retry, CircuitBreaker, Bulkhead, "
        f"RateLimiter, Timeout, Fallback, Hedge, Pipeline), got {value!r}"
    )


Stage = Callable[[_backend.Fn[..., Any]], _backend.Fn[..., Any]]


def _build_stages(policies: Sequence[Policy]) -> tuple[Stage, ...]:
    """Turn the policies into stages, innermost first: guard runs fold into one stage."""
    stages: list[Stage] = []
    guards: list[Guard] = []
    for policy in reversed(policies):
        if isinstance(policy, Guard) and policy._guard_folds:
            guards.insert(0, policy)
            continue
        if guards:
            stages.append(functools.partial(functools.partial, _run_guards, tuple(guards)))
            guards = []
        stages.append(functools.partial(functools.partial, policy.call))
    if guards:
        stages.append(functools.partial(functools.partial, _run_guards, tuple(guards)))
    return tuple(stages)


async def _run_guards(
    guards: tuple[Guard, ...],
    fn: _backend.Fn[..., Any],
    /,
    *args: Any,
    **kwargs: Any,
) -> Any:
    """Enter each guard (outermost first), run the call, exit them innermost first."""
    entered: list[tuple[Guard, Any]] = []
    try:
        for guard in guards:
            token = guard._guard_enter()
            if token is MUST_WAIT:
                token = await guard._guard_wait()
            entered.append((guard, token))
        result = await fn(*args, **kwargs)
        # unasync: sync-only: _backend.check_result(result, fn, "Pipeline")
    except BaseException as exc:
        error = _exit_all(entered, exc)
        if error is exc:
            _backend.check_awaited(exc, fn, "Pipeline")  # unasync: remove
            raise
        assert error is not None
        raise error from exc  # a guard's replacement (DeadlineExceeded for its cancellation)
    error = _exit_all(entered, None)
    if error is not None:
        raise error
    return result


def _exit_all(
    entered: list[tuple[Guard, Any]], error: BaseException | None
) -> BaseException | None:
    """Exit the entered guards innermost first; each sees the error the inner ones left."""
    for guard, token in reversed(entered):
        try:
            guard._guard_exit(token, error)
        except BaseException as replaced:  # a guard's own replacement (DeadlineExceeded)
            error = replaced
    return error


def _check_fallbacks_reachable(policies: Sequence[Policy]) -> None:
    """Reject a default-`on` Fallback shadowed by a value Fallback with the default `on`."""
    outer: int | None = None
    for index, policy in enumerate(policies):
        if not isinstance(policy, Fallback) or not policy._on_is_default:
            continue
        if outer is not None and policy._answers_every_match:
            raise ValueError(
                f"the Fallback at position {outer} can never run: the Fallback at position "
                f"{index}, inside it, answers every error it would; give the inner one a "
                "narrower on=, or put Fallback.last_good inside the value fallback instead"
            )
        if outer is None:
            outer = index
