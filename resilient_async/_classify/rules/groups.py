"""The default rule for exception groups (from a task group): classified by their leaves."""

from __future__ import annotations

from ..kinds import Check

__all__ = ["group_check", "group_rule"]


def group_rule(cls: type[BaseException]) -> Check | None:
    """Classify an exception group (from a task group) by its leaves.

    A group holding a stop signal is CANCELLED; one whose leaves all classify the same takes
    that class; any other is UNKNOWN. The placeholder `group_check` returned here is swapped
    by the engine for one that classifies the leaves under the same rules.
    """
    if issubclass(cls, BaseExceptionGroup):
        return group_check
    return None


def group_check(exc: BaseException) -> None:
    """A placeholder: the engine never runs it (see `group_rule`)."""
    raise AssertionError("replaced by the engine's group classification")  # pragma: no cover
