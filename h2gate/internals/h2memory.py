"""h2's per-connection objects made smaller: its settings, and its frame dispatch table.

Most of an idle connection's Python heap was h2's (bench/README.md, "Idle
connection memory"); two pieces of it are cut down here, behaviour unchanged.

Settings. h2 keeps every setting of both sides' ``Settings`` as a
``collections.deque`` (the current value first, then the values sent but not
yet acknowledged). A deque holds a block of 64 slots from the start (over
600 bytes), so the two ``Settings`` of one connection held about 10 KiB.
:class:`CompactSettings` keeps the same behaviour (the same mapping, the same
validation, the same ``acknowledge()`` answer, a new setting invisible until
acknowledged) with a plain dict of current values and a dict of pending
lists that exists only while a change waits for its ACK. It calls h2's own
``Settings.__init__`` (validation, defaults, ``_client``) and then takes over
its private ``_settings``; when :data:`h2gate.internals.probes.PROBES` says
that layout changed, :data:`SettingsBase` is h2's ``Settings`` as it comes.

Frame dispatch. Every ``H2Connection`` builds a dict of a dozen bound
methods (about 1.3 KiB) to dispatch received frames on.
:class:`FrameDispatch` answers the same lookups by binding the method when a
frame arrives (one attribute lookup per frame), from one table of method
names shared by every connection and read from h2's own table at import.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import h2.exceptions
import h2.settings
from h2.settings import ChangedSetting

from h2gate.internals.probes import H2_DISPATCH, H2_SETTINGS, PROBES

_validate = getattr(h2.settings, "_validate_setting", None)


class CompactSettings(h2.settings.Settings):
    """h2's ``Settings``, stored compactly (see the module docstring)."""

    _now: dict[Any, int | None]  # current value per setting; None: made by a change not acknowledged yet
    _pending: dict[Any, list[int]] | None  # values sent or received but not yet acknowledged, oldest first

    def __init__(self, client: bool = True, initial_values: dict[Any, int] | None = None) -> None:
        super().__init__(client, initial_values)
        stacks = self.__dict__.pop("_settings")
        self._now = {key: stack[0] for key, stack in stacks.items()}
        self._pending = None

    def acknowledge(self) -> dict[Any, ChangedSetting]:
        pending = self._pending
        changed: dict[Any, ChangedSetting] = {}
        if not pending:
            return changed
        now = self._now
        for key in [key for key in now if key in pending]:  # h2's order: the settings' own
            values = pending[key]
            old, new = now[key], values.pop(0)
            now[key] = new
            changed[key] = ChangedSetting(key, old, new)
            if not values:
                del pending[key]
        if not pending:
            self._pending = None
        return changed

    def __getitem__(self, key: Any) -> int:
        value = self._now[key]
        if value is None:  # only proposed so far: h2 keeps it a KeyError
            raise KeyError(key)
        return value

    def __setitem__(self, key: Any, value: int) -> None:
        assert _validate is not None
        invalid = _validate(key, value)
        if invalid:
            message = f"Setting {key} has invalid value {value}"
            raise h2.exceptions.InvalidSettingsValueError(message, error_code=invalid)
        if key not in self._now:
            self._now[key] = None
        pending = self._pending
        if pending is None:
            pending = self._pending = {}
        pending.setdefault(key, []).append(value)

    def __delitem__(self, key: Any) -> None:
        del self._now[key]
        if self._pending:
            self._pending.pop(key, None)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._now)

    def __len__(self) -> int:
        return len(self._now)

    def stacks(self) -> dict[Any, list[int | None]]:
        """Every setting as h2 would keep it: the current value, then the pending ones."""
        pending = self._pending or {}
        return {key: [value, *pending.get(key, ())] for key, value in self._now.items()}

    def __eq__(self, other: object) -> bool:
        if isinstance(other, CompactSettings):
            return self.stacks() == other.stacks()
        if isinstance(other, h2.settings.Settings):
            return self.stacks() == {key: list(stack) for key, stack in other._settings.items()}
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    __hash__ = None  # type: ignore[assignment]  # a mapping, as h2's


#: The class h2gate's connections keep their settings in: compact, or h2's own if its layout changed.
SettingsBase: type[h2.settings.Settings] = CompactSettings if PROBES[H2_SETTINGS] else h2.settings.Settings


def _method_names() -> dict[type, str]:
    """h2's frame class -> the name of the connection method it dispatches to (empty without the probe)."""
    if not PROBES[H2_DISPATCH]:
        return {}
    import h2.connection

    table = h2.connection.H2Connection()._frame_dispatch_table
    return {frame_type: method.__name__ for frame_type, method in table.items()}


_METHODS = _method_names()


class FrameDispatch:
    """h2's ``_frame_dispatch_table`` for one connection, binding each method as it is looked up."""

    __slots__ = ("_conn",)

    def __init__(self, conn: object) -> None:
        self._conn = conn

    def __getitem__(self, frame_type: type) -> Any:
        return getattr(self._conn, _METHODS[frame_type])


def slim(conn: Any) -> None:
    """Swap a new ``H2Connection``'s remote settings and dispatch table for the compact ones (where probed)."""
    conn.remote_settings = SettingsBase(client=not conn.config.client_side)
    if _METHODS:
        conn._frame_dispatch_table = FrameDispatch(conn)
