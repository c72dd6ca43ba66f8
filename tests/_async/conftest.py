"""Hooks and fixtures of the tests written once for both flavours (see `_backend.py`)."""

import pytest

from ._backend import mark_module
from ._backend import virtual_clock as virtual_clock


@pytest.hookimpl(wrapper=True)
def pytest_pycollect_makemodule(module_path: object, parent: object) -> object:
    """Give each test module here its flavour's marks (async: run on asyncio and trio)."""
    module = yield
    mark_module(module)
    return module
