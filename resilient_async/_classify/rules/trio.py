"""Default rules for trio's own errors, by name (its `Cancelled` is a stop signal)."""

from __future__ import annotations

from typing import Final

from ..kinds import ErrorClass

__all__ = ["CLASSES"]

# (top-level package, class name) -> class; see `rules.library_rule`.
CLASSES: Final[dict[tuple[str, str], ErrorClass]] = {
    ("trio", "TooSlowError"): ErrorClass.TIMEOUT,
}
