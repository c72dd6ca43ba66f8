"""Stop signals: the exceptions that no policy may ever catch, count or hide.

Two questions, one home:

- `is_catchable(exc)` asks it of a raised error at run time, the way every policy does: only
  an `Exception` may be caught. Anything else (cancellation on asyncio, trio or anyio,
  `KeyboardInterrupt`, `SystemExit`, `GeneratorExit`, a group holding one of them) is a stop
  signal and propagates untouched.
- `is_stop_type(cls)` asks it of an exception type, for classification (such an error is
  `ErrorClass.CANCELLED`) and to reject an `on=` that names one: the `STOP_SIGNALS` and
  `trio.Cancelled`, looked up without ever importing trio.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from typing_extensions import TypeIs

__all__ = ["STOP_SIGNALS", "is_catchable", "is_stop_type"]

# concurrent.futures.CancelledError (an Exception, raised by a cancelled future's result()) is
# classified as CANCELLED too, but a policy may catch it: it is not listed here.
STOP_SIGNALS: Final = (asyncio.CancelledError, KeyboardInterrupt, SystemExit, GeneratorExit)


def is_catchable(exc: BaseException | None) -> TypeIs[Exception]:
    """Tell whether a policy may catch, count or hide `exc`: False for a stop signal and None.

    Hot matchers inline it as `isinstance(exc, Exception)` (see `resilient_async._classify.on`).
    """
    return isinstance(exc, Exception)


def is_stop_type(cls: type[BaseException]) -> bool:
    """Tell whether `cls` is one of the `STOP_SIGNALS` or trio's `Cancelled` (or a subclass)."""
    if issubclass(cls, STOP_SIGNALS):
        return True
    # Never import trio: if it is not imported, no trio.Cancelled can exist.
    cancelled = getattr(sys.modules.get("trio"), "Cancelled", None)
    return isinstance(cancelled, type) and issubclass(cls, cancelled)
