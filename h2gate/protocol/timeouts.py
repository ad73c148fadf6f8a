"""A connection's deadlines as a table: the core writes them, one driver task sleeps until the earliest.

Theory of operation: a connection has many things that must happen "within N
seconds" (the client's preface, every open stream's body, the header block in
progress, the answer to our drain PING, the idle keep-alive, shutdown's cut).
A task or cancel scope per deadline would cost a task switch per DATA frame to
push it back; instead the core only *writes* deadlines into this table, which
is cheap, and the driver sleeps until :attr:`Deadlines.earliest`. Pushing a
deadline later needs no wake-up: the driver wakes at the old time, finds
nothing due and sleeps again. Only a deadline earlier than the one it sleeps
towards fires :attr:`Deadlines.moved_earlier`. No I/O and no clock of its own:
callers pass the time.
"""

from __future__ import annotations

import math
from collections.abc import Hashable

from h2gate.protocol.signal import Signal


class Deadlines:
    """Deadlines by key, in the connection clock's seconds."""

    __slots__ = ("_due", "earliest", "moved_earlier")

    def __init__(self) -> None:
        self._due: dict[Hashable, float] = {}
        #: No deadline is due before this (it may be earlier than the real earliest: a wake finds nothing due).
        self.earliest = math.inf
        self.moved_earlier = Signal()

    def arm(self, key: Hashable, deadline: float) -> None:
        """Set (or move) ``key``'s deadline."""
        self._due[key] = deadline
        if deadline < self.earliest:
            self.earliest = deadline
            self.moved_earlier.fire()

    def clear(self) -> None:
        """Nothing more is timed (the connection is closed)."""
        self._due.clear()
        self.earliest = math.inf
        self.moved_earlier.fire()

    def disarm(self, key: Hashable) -> None:
        self._due.pop(key, None)

    def armed(self, key: Hashable) -> bool:
        return key in self._due

    def expired(self, now: float) -> list[Hashable]:
        """Take out and return the keys due by ``now``, earliest first."""
        due = sorted((deadline, n, key) for n, (key, deadline) in enumerate(self._due.items()) if deadline <= now)
        for _, _, key in due:
            del self._due[key]
        self.earliest = min(self._due.values(), default=math.inf)
        return [key for _, _, key in due]
