"""The sync-only tests: `clock` is the virtual clock of the generated sync tests."""

from .._sync._backend import clock as clock
