"""One timer task per trio run for every connection's deadlines, instead of a sleeping task per connection.

Theory of operation. Each connection keeps its deadlines in its core's
:class:`~h2gate.protocol.timeouts.Deadlines` table and needs waking at the
earliest of them. A task per connection that only sleeps costs a task, a
cancel scope and an event each (about 2 KiB), on every idle connection: the
idle keep-alive is always armed. Here, one system task per trio run sleeps
until the earliest deadline of all connections and calls each connection's
``due()`` when its time comes.

Connections register through a :class:`TimerHandle`: :meth:`TimerHandle.at`
says "wake me at ``when``". The service keeps a heap of (time, order, handle);
a handle owns at most one live entry, the earliest it asked for. Asking for
an earlier time pushes a new entry and leaves the old one stale; asking for
a later one changes nothing (a wake that comes too early finds nothing due
and asks again, as :mod:`h2gate.protocol.timeouts` expects). A closed handle
(its connection ended) leaves its entry stale too. Stale entries are dropped
when they come up, and the heap is rebuilt without them once they are more
than half of it, so a server with many short connections and a long
keep-alive does not keep one entry per closed connection until its time.

A connection's ``due()`` runs in the service's task: it must not raise (an
exception would end the trio run); :class:`h2gate.protocol.driver.Connection`
catches its own faults there and closes the connection.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable

import trio

from h2gate.protocol.signal import Signal


class TimerHandle:
    """One connection's place in the :class:`Timers` heap."""

    __slots__ = ("_due", "_entry", "_service", "when")

    def __init__(self, service: Timers, due: Callable[[], None]) -> None:
        self._service = service
        self._due: Callable[[], None] | None = due
        self.when = math.inf  # the time of this handle's live entry (inf: none)
        self._entry = -1  # the order number of that entry

    def at(self, when: float) -> None:
        """Call ``due()`` at ``when`` or soon after (no-op if an earlier wake is already asked for)."""
        if when < self.when and self._due is not None:
            if self._entry >= 0:
                self._service.stale += 1
            self.when = when
            self._entry = self._service.push(when, self)

    def close(self) -> None:
        """The connection ended: its entry (if any) is stale, and nothing of it is called again."""
        if self._entry >= 0:
            self._service.stale += 1
        self.when, self._entry, self._due = math.inf, -1, None

    def live(self, entry: int) -> bool:
        return entry == self._entry

    def fire(self, entry: int) -> None:
        """The entry numbered ``entry`` came up: call ``due()`` if it is this handle's live one."""
        if entry != self._entry:
            self._service.stale -= 1  # replaced by an earlier one, or its connection ended
            return
        self.when, self._entry = math.inf, -1
        assert self._due is not None
        self._due()


class Timers:
    """The heap of every connection's next wake-up, and the task that sleeps on it (one per trio run)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._order = itertools.count()
        self._earlier = Signal()
        self.stale = 0  # entries in the heap whose handle moved on or closed

    def handle(self, due: Callable[[], None]) -> TimerHandle:
        return TimerHandle(self, due)

    def push(self, when: float, handle: TimerHandle) -> int:
        """Add an entry; returns its order number (the handle's key to it)."""
        if self.stale > 64 and self.stale * 2 > len(self._heap):
            self._compact()
        heap = self._heap
        first = heap[0][0] if heap else math.inf
        entry = next(self._order)
        heapq.heappush(heap, (when, entry, handle))
        if when < first:
            self._earlier.fire()
        return entry

    def _compact(self) -> None:
        self._heap = [item for item in self._heap if item[2].live(item[1])]
        heapq.heapify(self._heap)
        self.stale = 0

    async def run(self) -> None:
        while True:
            heap = self._heap
            with trio.move_on_at(heap[0][0] if heap else math.inf):
                await self._earlier.wait()
            now = trio.current_time()
            while self._heap and self._heap[0][0] <= now:  # a push from fire() may compact: self._heap each time
                _, entry, handle = heapq.heappop(self._heap)
                handle.fire(entry)


_SERVICE: trio.lowlevel.RunVar[Timers] = trio.lowlevel.RunVar("h2gate_timers")


def timers() -> Timers:
    """This trio run's timer service, started (as a system task) on first use."""
    try:
        return _SERVICE.get()
    except LookupError:
        service = Timers()
        _SERVICE.set(service)
        trio.lowlevel.spawn_system_task(service.run, name="h2gate connection timers")
        return service
