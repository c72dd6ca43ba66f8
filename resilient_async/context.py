"""Error context: fields that describe what the code was doing when an exception was raised.

`error_context(**fields)` pushes fields for a block; `current_context()` reads the merged
fields now; an exception leaving a block (or passing through a policy) gets the context of its
raise site attached, readable with `context_of(exc)` and shown in one PEP 678 note.

The context lives in one context variable holding an immutable linked node per active block,
so it reaches child tasks the way any context variable does and nothing set in a child leaks
to its parent. Pushing a block allocates one node and never copies the merged mapping; the
merged view is built on first read and cached on the node.
"""

from __future__ import annotations

import builtins
import itertools
import reprlib
from collections.abc import Mapping
from contextvars import ContextVar, Token
from types import MappingProxyType, TracebackType

from ._core.signals import is_catchable

__all__ = [
    "PreparedFields",
    "attach_context",
    "context_of",
    "current_context",
    "error_context",
]

_NOTE_PREFIX = "resilient_async context: "

# A value's repr is cut to this many characters in the note, so one huge value cannot flood
# a traceback or a log line. The mapping from `context_of` keeps the full value.
_MAX_VALUE_CHARS = 200

_ATTRIBUTE = "_resilient_async_context"


class error_context:
    """Add fields to the error context for the duration of a `with` block.

    Works in sync and async code alike (a plain `with`). Nested blocks merge their fields and
    an inner block wins on a key; `current_context()` returns the merged fields. An
    `Exception` that leaves the block gets the merged context of its raise site attached once
    (see `context_of`); blocks it passes through further out only add keys it does not have
    yet. Cancellation, `KeyboardInterrupt`, `SystemExit` and `GeneratorExit` are never touched.

    An instance may be kept and reused: entered again while already active (nested, or from
    several tasks or threads at once), each entry pushes its own node onto the context of the
    task that enters it. Blocks must be exited in the reverse order of entering, as `with`
    statements guarantee.

    Args:
        **fields: The fields to add. Names must be identifiers (a leading underscore is fine);
            values should be small, plain values (ids, names, numbers) since they are kept
            on exceptions and rendered with `repr()` in their note.

    Raises:
        ValueError: A field name is not an identifier.

    Example:
        ```python
        with error_context(order_id=order.id, step="charge"):
            await payments.charge(order)
        ```
    """

    __slots__ = ("_fields",)

    def __init__(self, **fields: object) -> None:
        for key in fields:
            if not key.isidentifier():
                raise ValueError(f"error_context field names must be identifiers, got {key!r}")
        # `**fields` is a fresh dict that nothing else can reach; it is never mutated, so nodes
        # and merged views can share it without copying.
        self._fields = fields

    def __repr__(self) -> str:
        inner = ", ".join(f"{key}={value!r}" for key, value in self._fields.items())
        return f"error_context({inner})"

    def __enter__(self) -> None:
        node = _Node(self._fields, _CURRENT.get())
        node.token = _CURRENT.set(node)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        node = _CURRENT.get()
        if node is None or node.fields is not self._fields:
            raise RuntimeError(
                f"{self!r} exited out of order: blocks must exit in the reverse order of entering"
            )
        if exc is not None and is_catchable(exc):  # no call on the success path
            _pass_through(exc, node)
        assert node.token is not None
        try:
            _CURRENT.reset(node.token)
        except ValueError:
            # Entered in a copy of this context (a generator resumed elsewhere): the token
            # belongs to the other context, so restore the same value without it.
            _CURRENT.set(node.parent)


def current_context() -> Mapping[str, object]:
    """Return the merged fields of the active `error_context` blocks, inner ones winning.

    The result is a read-only snapshot: later blocks do not change it. Repeated calls within
    the same block return the same object, in constant time.

    Returns:
        The merged fields, or an empty mapping outside every block.
    """
    node = _CURRENT.get()
    if node is None:
        return _EMPTY
    merged = node.merged
    return _merged_of(node) if merged is None else merged


def context_of(exc: BaseException) -> Mapping[str, object] | None:
    """Return the error context captured on `exc`, or None when nothing was captured.

    The context is captured when the exception leaves an `error_context` block or passes
    through a policy, and never for cancellation, `KeyboardInterrupt`, `SystemExit` or
    `GeneratorExit`. Nothing is captured where the merged context was empty. The result is a
    read-only snapshot; if the exception later passes through more blocks or policies, a
    new call shows the keys they added.

    Example:
        ```python
        try:
            await client.fetch(url)
        except Exception as exc:
            log.error("fetch failed", extra=dict(context_of(exc) or {}))
        ```
    """
    captured = _captured_of(exc)
    return None if captured is None else captured.view


def attach_context(exc: BaseException, fields: Mapping[str, object]) -> None:
    """Attach the current context and `fields` to `exc`, keeping what it already carries.

    The building block for policies on their error path (a Retry adds `attempt` and
    `policy`, a breaker `breaker_state`, a timeout `deadline_remaining`), and for code that
    hands an exception over without a `with error_context` block around the raise.

    When nothing was captured yet, `fields` are merged over `current_context()` (the policy
    runs inside the caller's blocks, so its own fields are closer to the raise site). When
    something was captured, `fields` and then the current context only add the keys that are
    missing: a field captured closer to the raise site is never overwritten. The note is
    updated in place. Cancellation and other non-`Exception` errors are left alone. Field
    names should be identifiers; they are not checked here, to keep the error path cheap.
    """
    if not is_catchable(exc):
        return
    node = _CURRENT.get()
    captured = _captured_of(exc)
    if captured is None:
        if node is None and type(fields) is PreparedFields:
            _capture_prepared(exc, fields)
            return
        current = _EMPTY if node is None else _merged_of(node)
        if not fields:
            if not current:
                return
            view = current
        elif not current:
            view = MappingProxyType(dict(fields))
        else:
            view = MappingProxyType({**current, **fields})
        _capture(exc, _Captured(view, node))
        return
    changed = _add_missing(captured, fields)
    if node is not None and not _is_ancestor(node, captured.node):
        changed = _add_missing(captured, _merged_of(node)) or changed
        captured.node = node
    if changed:
        _update_note(exc, captured)


class PreparedFields(dict[str, object]):
    """Constant context fields, with their view and note rendered once.

    A policy whose error-path fields never change (its name, a breaker's state) builds one per
    set of fields at construction and passes it to `attach_context`: on an exception raised
    outside any `error_context` block, the view and the note are then attached as they are,
    without being built again. Never mutate one after building it.

    Example:
        >>> fields = PreparedFields({"policy": "db"})
        >>> # later, on every rejection: attach_context(error, fields)
    """

    __slots__ = ("note", "view")

    def __init__(self, fields: Mapping[str, object]) -> None:
        super().__init__(fields)
        self.view: MappingProxyType[str, object] = MappingProxyType(dict(fields))
        self.note = _note_text(self.view)


def _capture_prepared(exc: Exception, fields: PreparedFields) -> None:
    captured = _Captured(fields.view, None)
    try:
        setattr(exc, _ATTRIBUTE, captured)
    except (AttributeError, TypeError):
        return
    if getattr(exc, "__notes__", None) is None:  # a fresh exception: the note is ready
        try:
            exc.add_note(fields.note)
        except (AttributeError, TypeError):
            return
        captured.note = fields.note
        return
    _update_note(exc, captured)


class _Node:
    """One active `error_context` entry: its own fields and the entry it is nested in."""

    __slots__ = ("fields", "merged", "parent", "token")

    def __init__(self, fields: dict[str, object], parent: _Node | None) -> None:
        self.fields = fields
        self.parent = parent
        # Filled on first read, then shared by every reader of this node.
        self.merged: MappingProxyType[str, object] | None = None
        self.token: Token[_Node | None] | None = None


class _Captured:
    """What is stored on an exception: the captured fields and the note that shows them."""

    __slots__ = ("node", "note", "view")

    def __init__(self, view: MappingProxyType[str, object], node: _Node | None) -> None:
        # Replaced, never mutated, when keys are added, so earlier snapshots stay valid.
        self.view = view
        # The innermost node whose merged fields are all in `view`: passing out through one of
        # its ancestors adds nothing, which is checked without comparing any keys.
        self.node = node
        self.note: str | None = None

    def __reduce__(self) -> tuple[object, ...]:
        # Nodes hold context variable tokens, which cannot be pickled; only the fields and
        # the note travel with a pickled exception.
        return (_restore, (dict(self.view), self.note))


def _restore(fields: dict[str, object], note: str | None) -> _Captured:
    captured = _Captured(MappingProxyType(fields), None)
    captured.note = note
    return captured


_CURRENT: ContextVar[_Node | None] = ContextVar("resilient_async.error_context", default=None)
_EMPTY: MappingProxyType[str, object] = MappingProxyType({})


def _merged_of(node: _Node) -> MappingProxyType[str, object]:
    """Return `node`'s merged view, built from its nearest cached ancestor on first use."""
    if node.merged is not None:
        return node.merged
    pending: list[dict[str, object]] = []
    ancestor: _Node | None = node
    while ancestor is not None and ancestor.merged is None:
        if ancestor.fields:
            pending.append(ancestor.fields)
        ancestor = ancestor.parent
    base = _EMPTY if ancestor is None or ancestor.merged is None else ancestor.merged
    if not pending:
        merged = base
    elif not base and len(pending) == 1:
        merged = MappingProxyType(pending[0])
    else:
        accumulated = base.copy()
        for fields in reversed(pending):
            accumulated.update(fields)
        merged = MappingProxyType(accumulated)
    node.merged = merged
    return merged


def _pass_through(exc: Exception, node: _Node) -> None:
    """Record that `exc` leaves the block of `node`."""
    captured = _captured_of(exc)
    if captured is None:
        merged = _merged_of(node)
        if merged:
            _capture(exc, _Captured(merged, node))
    elif _is_ancestor(node, captured.node):
        captured.node = node
    else:
        # Raised again somewhere else: add the keys of this place that it lacks.
        captured.node = node
        if _add_missing(captured, _merged_of(node)):
            _update_note(exc, captured)


def _is_ancestor(node: _Node, of: _Node | None) -> bool:
    """Tell whether `node` is `of` or one of the blocks `of` is nested in."""
    while of is not None:
        if of is node:
            return True
        of = of.parent
    return False


def _captured_of(exc: BaseException) -> _Captured | None:
    captured = getattr(exc, _ATTRIBUTE, None)
    return captured if isinstance(captured, _Captured) else None


def _capture(exc: Exception, captured: _Captured) -> None:
    try:
        setattr(exc, _ATTRIBUTE, captured)
    except (AttributeError, TypeError):
        return  # an exception type that refuses new attributes is left as it is
    _update_note(exc, captured)


def _add_missing(captured: _Captured, extra: Mapping[str, object]) -> bool:
    """Add the keys of `extra` that `captured` lacks; tell whether any was added."""
    current = captured.view
    added: dict[str, object] | None = None
    for key, value in extra.items():
        if key not in current:
            if added is None:
                added = current.copy()
            added[key] = value
    if added is None:
        return False
    captured.view = MappingProxyType(added)
    return True


def _update_note(exc: Exception, captured: _Captured) -> None:
    """Replace this library's note on `exc` in place, or add it when it is not there."""
    text = _note_text(captured.view)
    notes = getattr(exc, "__notes__", None)
    if notes is None:
        try:
            exc.add_note(text)
        except (AttributeError, TypeError):
            return
        captured.note = text
        return
    if not isinstance(notes, list):
        return  # someone replaced the notes with something else: leave them alone
    old = captured.note
    if old is not None:
        for index in range(len(notes) - 1, -1, -1):
            if notes[index] == old:
                notes[index] = text
                captured.note = text
                return
    notes.append(text)
    captured.note = text


def _note_text(view: Mapping[str, object]) -> str:
    return _NOTE_PREFIX + ", ".join([f"{key}={_render(value)}" for key, value in view.items()])


def _render(value: object) -> str:
    # The repr is built by a bounded renderer, so a huge value costs the same as a small one
    # (the note would cut it anyway, and it is rebuilt each time a policy adds a field).
    try:
        text = _BOUNDED.repr(value)
    except Exception:  # a broken __repr__ must not replace the error being annotated
        return f"<{type(value).__name__} with a failing repr>"
    if len(text) > _MAX_VALUE_CHARS:
        return text[: _MAX_VALUE_CHARS - 3] + "..."
    return text


class _BoundedRepr(reprlib.Repr):
    """`repr()` that stops early on long strings and big containers.

    Small values render exactly as `repr()` does (dicts keep their order); strings and bytes
    are cut before they are rendered, containers after a few items and a few levels.
    Other objects still use their own `__repr__` (a failing one is named, not raised).
    """

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 4
        self.maxtuple = self.maxlist = self.maxarray = self.maxdeque = 32
        self.maxdict = self.maxset = self.maxfrozenset = 32
        self.maxstring = self.maxlong = self.maxother = _MAX_VALUE_CHARS + 2

    def repr_str(self, x: str, level: int) -> str:
        if len(x) <= _MAX_VALUE_CHARS:
            return builtins.repr(x)
        return builtins.repr(x[:_MAX_VALUE_CHARS]) + "..."

    def repr_bytes(self, x: bytes, level: int) -> str:
        if len(x) <= _MAX_VALUE_CHARS:
            return builtins.repr(x)
        return builtins.repr(x[:_MAX_VALUE_CHARS]) + "..."

    def repr_dict(self, x: dict[object, object], level: int) -> str:
        if not x:
            return "{}"
        if level <= 0:
            return "{...}"
        items = [
            f"{self.repr1(key, level - 1)}: {self.repr1(value, level - 1)}"
            for key, value in itertools.islice(x.items(), self.maxdict)
        ]
        if len(x) > self.maxdict:
            items.append("...")
        return "{" + ", ".join(items) + "}"

    def repr_instance(self, x: object, level: int) -> str:
        return builtins.repr(x)


_BOUNDED = _BoundedRepr()
