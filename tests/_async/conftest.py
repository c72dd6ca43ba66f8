"""Hooks and fixtures of the tests written once for both flavours (see `_backend.py`)."""

import pytest  # unasync: remove

from ._backend import virtual_clock as virtual_clock

# unasync: begin-remove


@pytest.hookimpl(wrapper=True)
def pytest_pycollect_makemodule(module_path: object, parent: object) -> object:
    """Mark every module here `anyio`: its coroutine tests run on asyncio and on trio."""
    module = yield
    module.add_marker(pytest.mark.anyio)  # type: ignore[attr-defined]
    return module


# unasync: end-remove
