"""What the adapters share: bounded metric labels and optional-library imports."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["UNNAMED", "import_extra", "policy_label"]

UNNAMED = ""
"""The label value every unnamed policy shares."""


def policy_label(policy: str | None) -> str:
    """Return the bounded label for a policy name.

    A per-key guard is named `family[key]` (`Bulkhead.per_key`, `RateLimiter.per_key`); its
    key may be a user or a tenant, so a label keeps the family only: one time series per
    policy, never one per key. Unnamed policies share `UNNAMED`.
    """
    if policy is None:
        return UNNAMED
    if policy.endswith("]"):
        bracket = policy.find("[")
        if bracket > 0:
            return policy[:bracket]
    return policy


def import_extra(module: str, adapter: str, extra: str) -> ModuleType:
    """Import an adapter's library, or fail with the install command that provides it.

    Raises:
        ImportError: The library is not installed; the message names the extra.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{adapter} needs the {module.partition('.')[0]!r} package: "
            f"pip install resilient-async[{extra}]"
        ) from exc
