"""Error classification: what kind of failure an exception is, and what a policy should match.

Every policy decides what to do with an exception by asking one question: is it transient,
throttled, a timeout, permanent, a cancellation, or unknown? `classify` answers it with the
current `Classifier`, which starts with sensible defaults (builtin exceptions, HTTP status
codes, httpx, aiohttp, requests, trio, redis-py, PostgreSQL drivers by SQLSTATE, sqlite3's
"database is locked", exception groups by their leaves) and takes user rules that always
win. No driver is imported to recognise its errors: they are matched by module and name.

`compile_on` turns the `on=` argument that every policy accepts into a fast matcher; it is the
building block for custom policies. A compiled matcher never matches cancellation,
`KeyboardInterrupt`, `SystemExit` or `GeneratorExit`.

`retry_after` reads a server's hint (a `.retry_after` attribute or a `Retry-After` header).

This module only re-exports: the engine, the default rules (one module per family of
errors), `retry_after` and `compile_on` live in the private package `resilient_async._classify`.
"""

from __future__ import annotations

from ._classify.engine import Classifier as Classifier
from ._classify.engine import classify as classify
from ._classify.engine import get_classifier as get_classifier
from ._classify.engine import set_classifier as set_classifier
from ._classify.engine import use_classifier as use_classifier
from ._classify.kinds import ErrorClass as ErrorClass
from ._classify.on import DEFAULT as DEFAULT
from ._classify.on import DefaultType as DefaultType
from ._classify.on import OnSpec as OnSpec
from ._classify.on import compile_on as compile_on
from ._classify.retry_after import retry_after as retry_after
from ._exports import publish

__all__ = [
    "Classifier",
    "DEFAULT",
    "DefaultType",
    "ErrorClass",
    "OnSpec",
    "classify",
    "compile_on",
    "get_classifier",
    "retry_after",
    "set_classifier",
    "use_classifier",
]

# Last, once every public name is bound: they report this module as theirs.
publish(__name__, globals())
