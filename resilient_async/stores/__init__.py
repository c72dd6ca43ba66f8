"""Where policies keep state that several instances share.

`store=None` (the default everywhere) gives a policy instance its own private state. Policies
given the same store and the same name share one state: `MemoryStore` shares it inside one
process; `RedisStore` shares it across processes (its sync twin is
`resilient_async.sync.RedisStore`).
"""

from __future__ import annotations

from .._async.redis_store import RedisStore as RedisStore
from .._exports import publish
from .base import StateStore as StateStore
from .memory import MemoryStore as MemoryStore

__all__ = ["MemoryStore", "RedisStore", "StateStore"]

# Last, once every public name is bound: they report this module as theirs.
publish(__name__, globals())
