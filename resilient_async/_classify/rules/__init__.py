"""The default rules, one module per family of errors, in the order they are asked.

To teach the defaults a new library, add a module here: a `CLASSES` table when its errors
are recognised by name (merged into `library_rule`), or a rule of its own when the answer
depends on what an instance carries. Never import the library: match by module and name.
"""

from __future__ import annotations

from typing import Final

from ..kinds import ErrorClass, Rule
from . import http, postgres, redis, trio
from .builtins import errno_rule, stop_rule, type_rule
from .groups import group_check, group_rule
from .sqlite import busy_rule

__all__ = ["DEFAULT_RULES", "group_check", "library_rule"]

# Third-party errors, recognised by (top-level package, class name) anywhere in the MRO so that
# the libraries never need to be imported.
_LIBRARY_CLASSES: Final[dict[tuple[str, str], ErrorClass]] = {
    **http.CLASSES,
    **trio.CLASSES,
    **redis.CLASSES,
    **postgres.CLASSES,
}


def library_rule(cls: type[BaseException]) -> ErrorClass | None:
    """Third-party errors by name; the most derived match wins."""
    for klass in cls.__mro__:
        package = str(getattr(klass, "__module__", "")).partition(".")[0]
        found = _LIBRARY_CLASSES.get((package, klass.__name__))
        if found is not None:
            return found
    return None


DEFAULT_RULES: Final[tuple[Rule, ...]] = (
    stop_rule,
    group_rule,
    http.status_rule,
    busy_rule,
    postgres.sqlstate_rule,
    library_rule,
    type_rule,
    errno_rule,
)
