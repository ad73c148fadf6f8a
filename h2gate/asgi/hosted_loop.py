"""The asyncio loop the app runs in, turned one turn at a time by a trio task (:mod:`h2gate.asgi.runner`).

A module of its own, interpreted in the compiled build (pyproject.toml,
``[tool.h2gate.mypyc.leave-out]``): both classes subclass asyncio's, and mypyc
2.4.1 compiles such a subclass either as a native class freed without clearing
its weak references (anyio keeps a WeakKeyDictionary keyed by the running
loop) or, marked non-native, not at all (it cannot import the module where
``asyncio.SelectorEventLoop`` is defined). asyncio's own loop is Python code,
so an interpreted subclass costs what asyncio costs.
"""

from __future__ import annotations

import asyncio
import selectors
from collections import deque
from collections.abc import Callable
from typing import Any

from h2gate.internals.asyncio_ready import ready_queue

__all__ = ["HostedLoop", "ignore"]


def ignore() -> None:
    """The kick of a loop no task drives, and the turn's end before one does: nothing to do."""


class _OneTurnSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """The loop's selector: polls without blocking and ends the turn; trio does the waiting.

    asyncio passes ``select()`` the time it would sleep (0 when callbacks are
    ready, a timer's delay, or None); that figure is kept for the driver.
    """

    def __init__(self) -> None:
        super().__init__()
        self.wanted: float | None = 0.0
        self.end_turn: Callable[[], None] = ignore

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        self.wanted = timeout
        self.end_turn()
        return super().select(0)  # type: ignore[no-any-return]


_call_soon = asyncio.SelectorEventLoop.call_soon  # on every scheduled callback: skip super()'s lookup
_call_at = asyncio.SelectorEventLoop.call_at


class HostedLoop(asyncio.SelectorEventLoop):
    """An asyncio loop turned by a trio task; new callbacks and timers call ``kick``."""

    def __init__(self) -> None:
        self.turns = _OneTurnSelector()
        super().__init__(self.turns)
        self.turns.end_turn = self.stop
        self.kick: Callable[[], None] = ignore
        #: Where call_soon's handles go, appended here directly while the loop is open and not in
        #: debug mode (h2gate.internals.asyncio_ready); None: call asyncio's call_soon.
        self._quick: deque[asyncio.Handle] | None = ready_queue(self)

    def call_soon(  # type: ignore[override]  # typeshed's TypeVarTuple form; same behaviour
        self, callback: Callable[..., object], *args: Any, context: Any = None
    ) -> asyncio.Handle:
        ready = self._quick
        if ready is None:
            handle = _call_soon(self, callback, *args, context=context)
        else:  # what call_soon does on an open loop outside debug mode, without its three calls
            handle = asyncio.Handle(callback, args, self, context)
            ready.append(handle)
        self.kick()
        return handle

    def set_debug(self, enabled: bool) -> None:
        super().set_debug(enabled)
        self._quick = ready_queue(self)  # debug mode: call_soon checks the thread and the callback

    def close(self) -> None:
        self._quick = None  # closed: call_soon raises
        super().close()

    def call_at(  # type: ignore[override]
        self, when: float, callback: Callable[..., object], *args: Any, context: Any = None
    ) -> asyncio.TimerHandle:
        handle = _call_at(self, when, callback, *args, context=context)
        self.kick()
        return handle

    def add_signal_handler(self, sig: int, callback: Callable[..., object], *args: Any) -> None:  # type: ignore[override]
        # asyncio would take over the signal wake-up fd that trio relies on for SIGTERM/SIGHUP.
        raise RuntimeError("h2gate handles the process's signals itself; an app cannot add asyncio signal handlers")
