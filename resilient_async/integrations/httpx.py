"""httpx transports that send each request through a policy.

`AsyncResilientTransport` (for `httpx.AsyncClient`, with a `resilient_async` policy) and its
sync twin `ResilientTransport` (for `httpx.Client`, with a `resilient_async.sync` policy).
See the "HTTP clients" page of the documentation for the rules they follow.

Raises:
    ImportError: httpx is not installed (`pip install resilient-async[httpx]`).
"""

from __future__ import annotations

from .._exports import publish

try:
    import httpx as _httpx  # noqa: F401  # imported first for a clear error when missing
except ImportError as exc:
    raise ImportError(
        "resilient_async.integrations.httpx needs the 'httpx' package: "
        "pip install resilient-async[httpx]"
    ) from exc

from .._async.http import AsyncResilientTransport as AsyncResilientTransport
from .._sync.http import ResilientTransport as ResilientTransport

__all__ = ["AsyncResilientTransport", "ResilientTransport"]

# Last, once every public name is bound: they report this module as theirs.
publish(__name__, globals())
