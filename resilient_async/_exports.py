"""Make public objects report the module users import them from, as trio does.

A class defined in `resilient_async._async.retry` and exported as `resilient_async.Retry`
says so in tracebacks, reprs and `help()` only when its `__module__` is `resilient_async`.
Each public namespace calls `publish` once, at the end of its module: every class and
function in its `__all__` that is defined deeper in the package (and the classes and
functions nested in those classes) is moved to it. An object another public namespace
already claimed (the async and sync APIs share the errors and the classifier) is left as it
is, so the first claim wins: `resilient_async` is always imported before its submodules
finish.

Only `__module__` changes: a public object's `__qualname__` is its exported name (checked by
the tests), so pickle still finds every class, exceptions included.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import FunctionType
from typing import Final

__all__ = ["publish"]

_PACKAGE: Final = "resilient_async."


def publish(module_name: str, namespace: Mapping[str, object]) -> None:
    """Set `__module__` to `module_name` on the objects `namespace["__all__"]` names.

    Args:
        module_name: The public module, e.g. `"resilient_async"`.
        namespace: That module's `globals()`.
    """
    names = namespace["__all__"]
    assert isinstance(names, list)
    for name in names:
        _claim(namespace[name], module_name)


def _claim(obj: object, module_name: str) -> None:
    if not isinstance(obj, type | FunctionType):
        return  # a module, a constant, a type alias
    origin = getattr(obj, "__module__", None)
    if not isinstance(origin, str) or not origin.startswith(_PACKAGE) or origin == module_name:
        return  # foreign, or already claimed by another public namespace
    obj.__module__ = module_name
    if isinstance(obj, type):
        for attribute, value in vars(obj).items():
            inner = getattr(value, "__func__", value)  # staticmethod and classmethod
            # Only what was defined in the class body: not an alias to another class.
            nested = getattr(inner, "__qualname__", None) == f"{obj.__qualname__}.{attribute}"
            if nested and getattr(inner, "__module__", None) == origin:
                _claim(inner, module_name)
