"""Per-connection deadlines (header completion, request-body idle) watched by one task.

Theory of operation: a connection can have many things that must happen "within
N seconds" (every open stream's body, the header block in progress). A task or
cancel scope per deadline would cost a task switch per DATA frame to push it
back; instead the owner only *writes* deadlines into a table, which is cheap,
and one watchdog task sleeps until the earliest one. Pushing a deadline later
needs no wake-up: the watchdog wakes at the old time, finds nothing due and
sleeps again. Only a deadline earlier than the one it sleeps towards wakes it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable

import trio


class Watchdog:
    """Deadlines by key (trio clock); :meth:`run` calls ``on_expired(key)`` for each one that passes."""

    def __init__(self) -> None:
        self._due: dict[Hashable, float] = {}
        self._earliest = math.inf
        self._wake = trio.Event()

    def arm(self, key: Hashable, deadline: float) -> None:
        """Set (or move) ``key``'s deadline."""
        self._due[key] = deadline
        if deadline < self._earliest:
            self._earliest = deadline
            self._wake.set()

    def disarm(self, key: Hashable) -> None:
        self._due.pop(key, None)

    def armed(self, key: Hashable) -> bool:
        return key in self._due

    async def run(self, on_expired: Callable[[Hashable], None]) -> None:
        """Watch forever (until cancelled with the connection)."""
        while True:
            self._earliest = min(self._due.values(), default=math.inf)
            with trio.move_on_at(self._earliest):
                await self._wake.wait()
            self._wake = trio.Event()
            now = trio.current_time()
            for key in [key for key, deadline in self._due.items() if deadline <= now]:
                del self._due[key]
                on_expired(key)
