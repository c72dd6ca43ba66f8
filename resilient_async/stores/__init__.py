"""Where policies keep state that several instances share.

`store=None` (the default everywhere) gives a policy instance its own private state. Policies
given the same store and the same name share one state: `MemoryStore` shares it inside one
process; a distributed store shares it across processes.
"""

from __future__ import annotations

from .memory import MemoryStore as MemoryStore

__all__ = ["MemoryStore"]
