"""Compose policies into one: `pipeline(outermost, ..., innermost)`.

A pipeline is built once, as a chain of stages. Runs of consecutive guards (circuit breaker,
bulkhead, rate limiter, timeout) are folded into one stage that takes each guard's admission
steps (`enter_nowait`, `enter`, `exit`) with plain method calls and exits them in reverse
order, so they cost their own bookkeeping and no coroutine frame each. Policies that run the
call themselves (retry, fallback, hedge, another pipeline, any custom `Policy`), and guards
whose `exit` may have to wait (a breaker on a remote store), wrap the next stage through
their `call`. An error leaving the pipeline carries one merged error context:
each policy adds its fields, and a field set closer to the raise site is never overwritten.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import partial
from typing import Any, ParamSpec, TypeVar, cast

from .._core.checks import check_hooks
from ..instrumentation import Hook
from ..instrumentation import hooks as scoped_hooks
from . import _backend
from .fallback import check_fallbacks_reachable
from .policy import MUST_WAIT, WITHDRAWN, Guard, NamedPolicy, Policy

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

    __slots__ = ("_hooks", "_name", "_policies", "_run")

    def __init__(self, *policies: Policy, hooks: Iterable[Hook] = ()) -> None:
        if not policies:
            raise ValueError("pipeline needs at least one policy")
        for index, policy in enumerate(policies):
            if not isinstance(policy, Policy):
                raise TypeError(_not_a_policy(index, policy))
        check_fallbacks_reachable(policies)
        self._policies: tuple[Policy, ...] = policies
        self._hooks: tuple[Hook, ...] = check_hooks(hooks)
        self._name: str | None = None  # a pipeline names no events of its own
        self._run = _build_stages(policies)

    @property
    def policies(self) -> tuple[Policy, ...]:
        """The policies, outermost first."""
        return self._policies

    def __repr__(self) -> str:
        return f"Pipeline({', '.join(map(repr, self.policies))})"

    async def call(self, fn: _backend.Fn[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn(*args, **kwargs)` through every policy, outermost first."""
        if self._hooks:
            with scoped_hooks(*self._hooks):
                return cast(T, await self._run(fn, *args, **kwargs))
        return cast(T, await self._run(fn, *args, **kwargs))


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


Run = _backend.Fn[..., Any]  # run(fn, *args, **kwargs)


def _build_stages(policies: Sequence[Policy]) -> Run:
    """Link the policies into stages, built once: runs of foldable guards share one stage.

    Each stage's `run(fn, *args, **kwargs)` applies its policies around the next stage's
    `run` (the innermost one calls `fn`). A call through the pipeline builds one small
    binding per policy that runs the call itself (it must be handed a callable that takes
    the caller's arguments), and nothing for the guards.
    """
    inner: Run | None = None
    guards: list[Guard] = []
    for policy in reversed(policies):
        if (
            isinstance(policy, Guard)
            and type(policy).call is Guard.call
            and not policy.exit_may_wait
        ):
            guards.insert(0, policy)
            continue
        if guards:
            inner = _GuardStage(tuple(guards), inner).run
            guards = []
        # The innermost stage is the policy's own `call`; the others bind the next stage.
        inner = policy.call if inner is None else _PolicyStage(policy, inner).run
    if guards:
        inner = _GuardStage(tuple(guards), inner).run
    assert inner is not None
    return inner


class _PolicyStage:
    """A policy that runs the call itself (retry, fallback, hedge...) around the next stage."""

    __slots__ = ("_call", "_inner")

    def __init__(self, policy: Policy, inner: Run) -> None:
        self._call = policy.call
        self._inner = inner

    async def run(self, fn: _backend.Fn[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        return await self._call(partial(self._inner, fn), *args, **kwargs)


class _GuardStage:
    """Consecutive guards entered outermost first and exited innermost first, in one frame."""

    __slots__ = ("_guards", "_inner", "run")

    def __init__(self, guards: tuple[Guard, ...], inner: Run | None) -> None:
        self._guards = guards
        self._inner = inner
        self.run: Run = self._run if len(guards) > 1 else self._run_one

    async def _run(self, fn: _backend.Fn[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        entered: list[tuple[Guard, Any]] = []
        inner = self._inner
        try:
            for guard in self._guards:
                token = guard.enter_nowait()
                if token is MUST_WAIT:
                    token = await guard.enter()
                entered.append((guard, token))
            result = (
                await fn(*args, **kwargs) if inner is None else await inner(fn, *args, **kwargs)
            )
        except BaseException as exc:
            error = _failed(entered, exc, fn if inner is None else None)
            if error is exc:
                raise
            raise error from error.__cause__
        # unasync: sync-only: if inner is None and type(result) is _backend.CoroutineType:
        # unasync: sync-only:     _exit_all(entered, WITHDRAWN)  # an async callable: never ran
        # unasync: sync-only:     _backend.check_result(result, fn, "Pipeline")
        replaced = _exit_all(entered, None)
        if replaced is not None:
            raise replaced
        return result

    async def _run_one(self, fn: _backend.Fn[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """`_run` for a run of one guard (say a breaker between two other policies)."""
        guard = self._guards[0]
        inner = self._inner
        token = guard.enter_nowait()
        if token is MUST_WAIT:
            token = await guard.enter()
        try:
            result = (
                await fn(*args, **kwargs) if inner is None else await inner(fn, *args, **kwargs)
            )
        except BaseException as exc:
            error = _failed([(guard, token)], exc, fn if inner is None else None)
            if error is exc:
                raise
            raise error from error.__cause__
        # unasync: sync-only: if inner is None and type(result) is _backend.CoroutineType:
        # unasync: sync-only:     guard.exit(token, WITHDRAWN)  # an async callable: never ran
        # unasync: sync-only:     _backend.check_result(result, fn, "Pipeline")
        guard.exit(token, None)
        return result


def _failed(entered: list[tuple[Guard, Any]], exc: BaseException, leaf_fn: object) -> BaseException:
    """Exit the entered guards after the call raised `exc`; return what to raise.

    That is `exc` itself; the clear `TypeError` when `leaf_fn` (the function the innermost
    stage called, else None) is of the other flavour, the call then counting as nothing; or
    a guard's replacement (`DeadlineExceeded` for its own cancellation), caused by `exc`.
    Each returned error other than `exc` carries the `__cause__` to raise it from.
    """
    misuse = None if leaf_fn is None else _backend.misuse_of(exc, leaf_fn, "Pipeline")
    if misuse is not None:
        _exit_all(entered, WITHDRAWN)
        return misuse
    error = _exit_all(entered, exc)
    assert error is not None
    if error is not exc:
        error.__cause__ = exc
    return error


def _exit_all(
    entered: list[tuple[Guard, Any]], error: BaseException | None
) -> BaseException | None:
    """Exit the entered guards innermost first; each sees the error the inner ones left."""
    for guard, token in reversed(entered):
        try:
            guard.exit(token, error)
        except BaseException as replaced:  # a guard's own replacement (DeadlineExceeded)
            error = replaced
    return error
