"""A re-armable wake-up shared by the connection, its streams and the send scheduler."""

from __future__ import annotations

from collections.abc import Callable

import trio


class Signal:
    """A re-armable wake-up: ``fire()`` wakes every current waiter, later waiters wait for the next one.

    The event is made by the first waiter, not by ``fire()``: most signals
    (data arrived, window opened, writer drained) fire far more often than
    anyone waits on them, and an allocation per fire is a cost per request.
    """

    __slots__ = ("_ahead", "_callbacks", "_event")

    def __init__(self) -> None:
        self._event: trio.Event | None = None
        self._callbacks: list[Callable[[], object]] | None = None  # made by the first then(), as the event
        self._ahead = 0  # how many callbacks at the front were added with ahead=True

    def fire(self) -> None:
        event = self._event
        if event is not None:
            self._event = None
            event.set()
        callbacks = self._callbacks
        if callbacks:
            self._callbacks, self._ahead = None, 0
            for callback in callbacks:
                callback()

    def then(self, callback: Callable[[], object], *, ahead: bool = False) -> None:
        """Call ``callback`` (a plain function: it must not raise) at the next fire, once.

        Callbacks run in the order added, those added with ``ahead`` first.
        """
        callbacks = self._callbacks
        if callbacks is None:
            callbacks = self._callbacks = []
        if ahead:
            callbacks.insert(self._ahead, callback)
            self._ahead += 1
        else:
            callbacks.append(callback)

    async def wait(self) -> None:
        event = self._event
        if event is None:
            event = self._event = trio.Event()
        await event.wait()
