"""`RetryBudget`: bound the retries of every policy that shares it to a fraction of the calls.

The counts are the pure `RetryBudgetState` behind a port: in this process (a withdrawal is
answered at once) or on a server (a withdrawal is one awaited step). The budgets of the
retry loops that enclose the running code are listed in a context variable, so a loop
nested in another one's attempt draws on them too.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from datetime import timedelta
from typing import cast

from .._core.budget import RetryBudgetState, check_budget_config
from .._core.checks import check_name
from ..stores.base import StateStore
from . import _backend
from .ports import BudgetConfig, BudgetPort, MemoryBudgetPort, SharedBudgetPort

__all__ = ["ACTIVE_BUDGETS", "RetryBudget", "enter_budget", "join_budget"]

ACTIVE_BUDGETS: ContextVar[tuple[RetryBudget, ...]] = ContextVar(
    "resilient_async.retry_budgets", default=()
)
"""The budgets of the retry loops that enclose this code, outermost first.

A loop nested in another one's attempt withdraws from them too, so nesting cannot multiply
retries beyond a budget; a loop whose own budget is already listed does not deposit again
(its calls are part of the enclosing call, not new ones).
"""


class RetryBudget:
    """Bound the retries of every `Retry` that shares it to a fraction of the calls.

    Finagle-style: each call through a `Retry` that uses the budget deposits, each retry
    withdraws, and a retry is made only while the retries within the last `ttl` seconds
    stay within `ratio * calls + min_per_second * ttl`. So N failing calls make at most
    `N * (1 + ratio) + min_per_second * ttl` attempts in a window, however many policies
    share the budget. When it refuses, the loop stops and the last error propagates
    (`stop_reason` `"budget"`).

    A retry loop nested in an attempt of a loop that uses a budget withdraws from that
    budget too (and does not deposit into it again), so nested retries cannot multiply
    beyond it. Memory is O(1); counts expire in steps of `ttl / 10`.

    Other policies (a `Hedge`, code of your own) draw on it with `deposit()` for each call
    and `withdraw()` (or `try_withdraw()`, for a budget kept in this process) for each
    extra attempt.

    Args:
        ratio: Retries earned per call, >= 0 (0.2 = one retry per five calls).
        min_per_second: Retries allowed per second whatever the calls, >= 0.
        ttl: The window in seconds (or a `timedelta`), >= 1e-6.
        name: The budget's name; required with `store`.
        store: Where the state lives: None for state of this instance's own, a
            `MemoryStore` in which budgets of the same name share one state in this process,
            or a `RedisStore` that shares it across processes (retries are withdrawn in one
            step on the server; deposits are sent in batches, so the budget errs low). They
            must have the same parameters.

    Raises:
        ValueError: A parameter is out of range, `store` is given without `name`, or a
            budget of that name in `store` has other parameters.
        TypeError: A parameter has the wrong type.

    Example:
        ```python
        budget = RetryBudget(ratio=0.1)
        users = Retry(attempts=4, budget=budget)
        orders = Retry(attempts=4, budget=budget)  # both draw on the same budget
        ```
    """

    __slots__ = ("_cell", "_local", "_min_per_second", "_name", "_ratio", "_shared", "_ttl")

    def __init__(
        self,
        ratio: float = 0.2,
        min_per_second: float = 10.0,
        ttl: float | timedelta = 10.0,
        *,
        name: str | None = None,
        store: StateStore | None = None,
    ) -> None:
        ratio, min_per_second, ttl = check_budget_config(ratio, min_per_second, ttl)
        name = check_name(name)
        self._ratio = ratio
        self._min_per_second = min_per_second
        self._ttl = ttl
        self._name = name

        def create() -> BudgetPort:
            return MemoryBudgetPort(RetryBudgetState(ratio, min_per_second, ttl))

        if store is None:
            port = create()
        elif not isinstance(store, StateStore):
            raise TypeError(f"store must be a MemoryStore, a RedisStore or None, got {store!r}")
        elif name is None:
            raise ValueError("name is required with store=: budgets in a store share by name")
        else:
            config = BudgetConfig(ratio, min_per_second, ttl)
            flavour = "async" if _backend.IS_ASYNC else "sync"
            port = store.shared("retry_budget", name, config, create, flavour=flavour)
        self._cell = port
        # A budget in this process withdraws at once; a shared one in an awaited step.
        self._local = port if isinstance(port, MemoryBudgetPort) else None
        self._shared: SharedBudgetPort | None = None
        if self._local is None:
            self._shared = cast(SharedBudgetPort, port)

    @property
    def ratio(self) -> float:
        """Retries earned per call."""
        return self._ratio

    @property
    def min_per_second(self) -> float:
        """Retries allowed per second whatever the calls."""
        return self._min_per_second

    @property
    def ttl(self) -> float:
        """The window in seconds."""
        return self._ttl

    @property
    def name(self) -> str | None:
        """The budget's name, or None."""
        return self._name

    @property
    def shared(self) -> bool:
        """True when the state lives on a server: withdraw with `withdraw()` only."""
        return self._shared is not None

    def __repr__(self) -> str:
        return (
            f"RetryBudget(ratio={self._ratio!r}, min_per_second={self._min_per_second!r}, "
            f"ttl={self._ttl!r}, name={self._name!r})"
        )

    def available(self) -> float:
        """Return how many retries the budget would allow now (may be fractional).

        Raises:
            RuntimeError: No event loop is running (async flavour).
        """
        return self._cell.available(_backend.current_time())

    def deposit(self) -> None:
        """Count one call (a first attempt): each one earns `ratio` retries.

        Raises:
            RuntimeError: No event loop is running (async flavour).
        """
        self._cell.deposit(_backend.current_time())

    def try_withdraw(self, now: float | None = None) -> bool:
        """Withdraw one retry at once if the budget allows it; tell whether it did.

        For a budget kept in this process (no store, or a `MemoryStore`).

        Args:
            now: The current time on the library's clock, when the caller has just read
                it; None reads it.

        Raises:
            RuntimeError: The budget is shared through a server (`shared`): use
                `withdraw()`; or no event loop is running (async flavour, `now` None).
        """
        local = self._local
        if local is None:
            raise RuntimeError(
                f"{self!r} is shared through a server: withdraw from it with withdraw()"
            )
        return local.try_withdraw(_backend.current_time() if now is None else now)

    async def withdraw(self, now: float | None = None) -> bool:
        """Withdraw one retry if the budget allows it; tell whether it did.

        A budget kept in this process answers at once; a shared one in one step on the
        server (a `RedisStore` that cannot be reached answers from local state).

        Args:
            now: The current time on the library's clock, when the caller has just read
                it; None reads it.

        Raises:
            ValueError: The shared budget on the server has other parameters.
            RuntimeError: No event loop is running (async flavour, `now` None).
        """
        if now is None:
            now = _backend.current_time()
        shared = self._shared
        if shared is None:
            return self.try_withdraw(now)
        return await shared.withdraw(now)


def join_budget(own: RetryBudget | None) -> tuple[RetryBudget, ...] | None:
    """Deposit into `own` for a new loop, unless an enclosing loop already uses it.

    Returns the budgets a retry of the new loop withdraws from when they differ from the
    enclosing ones (`ACTIVE_BUDGETS`), else None.
    """
    if own is None:
        return None
    enclosing = ACTIVE_BUDGETS.get()
    if own in enclosing:
        return None
    own.deposit()
    return (*enclosing, own)


def enter_budget(
    own: RetryBudget | None,
) -> tuple[tuple[RetryBudget, ...], Token[tuple[RetryBudget, ...]] | None]:
    """Join `own` (see `join_budget`) and list the loop's budgets for the loops it encloses.

    Returns the budgets a retry of the new loop withdraws from, and the token that
    restores `ACTIVE_BUDGETS` when the loop ends (None when it was left unchanged).
    """
    budgets = join_budget(own)
    if budgets is None:
        return ACTIVE_BUDGETS.get(), None
    return budgets, ACTIVE_BUDGETS.set(budgets)
