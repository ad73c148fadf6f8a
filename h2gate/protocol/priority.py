"""RFC 9218 extensible priorities: parsing the signals, and which waiting stream sends next.

Theory of operation. A client states a response's priority in the ``priority``
request header or, later, in a PRIORITY_UPDATE frame (type 0x10, on stream 0):
an urgency ``u`` from 0 (most urgent) to 7 (default 3) and ``i`` (incremental,
default false). Malformed signals are ignored, as §4 and §7 ask: the stream
keeps what it had.

:class:`Scheduler` is a pure object. It only sees the streams that are
*contending*: a stream that can send at once (window open, writer queue below
its high-water mark, nobody else waiting) never registers and pays nothing. A
stream that had to wait for window, pushed the writer's queue over its
high-water mark, or finds others waiting, registers, and
:meth:`Scheduler.next` names the one that may put its next quantum into h2:

* the lowest urgency first;
* among equal urgency, non-incremental streams one at a time, lowest stream
  id first (a client wants those whole, in order);
* then incremental streams round-robin, one quantum each.

A stream for which the client sent no signal at all is scheduled as
urgency 3, *incremental*: with no priorities the connection is shared
round-robin, so a small response is never stuck behind a large download.

:class:`SendTurns` is the trio side (one per connection): a stream awaits
its turn, sends one quantum, then passes the turn on.
"""

from __future__ import annotations

import re
from collections import deque
from typing import NamedTuple

import trio

from h2gate.protocol.signal import Signal

#: Bytes a contending stream puts into h2 per turn before the next stream gets one.
QUANTUM = 64 * 1024
#: PRIORITY_UPDATE values remembered for streams that have not been seen yet (bounded).
MAX_EARLY_UPDATES = 128
#: A priority field longer than this is not parsed (nothing legitimate comes close).
MAX_FIELD = 1024


class Priority(NamedTuple):
    urgency: int = 3
    incremental: bool = False


#: What a stream gets when its client sent no priority signal: round-robin with its peers.
UNSIGNALLED = Priority(3, True)
#: What a signal starts from (RFC 9218 §4): urgency 3, not incremental.
DEFAULT = Priority()

_KEY = re.compile(rb"[a-z*][a-z0-9_\-.*]*\Z")
_INTEGER = re.compile(rb"-?[0-9]{1,15}\Z")
#: An RFC 8941 bare item (integer, decimal, string, token, byte sequence, boolean) or an inner list.
_BARE_ITEM = re.compile(
    rb'(-?[0-9]{1,15}(\.[0-9]{1,3})?|"[^"\\]*"|[A-Za-z*][!#$%&\'*+\-.^_`|~:/0-9A-Za-z]*|:[A-Za-z0-9+/=]*:|\?[01]|\(.*\))\Z'
)


def parse_priority(value: bytes | bytearray | memoryview, base: Priority = DEFAULT) -> Priority | None:
    """The priority a ``priority`` field value states, starting from ``base``; None if malformed.

    A Structured Fields dictionary (RFC 8941) of which only ``u`` (integer
    0..7) and ``i`` (boolean) mean anything here; other members, parameters
    and out-of-range values are ignored, a syntax error voids the whole value.
    """
    raw = bytes(value)
    if len(raw) > MAX_FIELD:
        return None
    urgency, incremental = base.urgency, base.incremental
    if not raw.strip(b" \t"):
        return Priority(urgency, incremental)
    for member in raw.split(b","):
        member = member.strip(b" \t")
        item = member.split(b";", 1)[0]  # parameters carry nothing we use
        key, eq, val = item.partition(b"=")
        if not _KEY.match(key) or (eq and not _BARE_ITEM.match(val)):
            return None
        if key == b"u":
            if not eq or not _INTEGER.match(val):
                continue  # not an integer: ignore the member
            number = int(val)
            if 0 <= number <= 7:
                urgency = number
        elif key == b"i":
            if not eq:
                incremental = True
            elif val in (b"?1", b"?0"):
                incremental = val == b"?1"
    return Priority(urgency, incremental)


def priority_of_headers(fields: list[tuple[bytes, bytes]]) -> Priority | None:
    """The priority the request's ``priority`` header fields state (lines joined by commas), or None."""
    values = [value for name, value in fields if name == b"priority"]
    if not values:
        return None
    return parse_priority(b",".join(values))


class Scheduler:
    """Which contending stream sends its next quantum. Pure: no I/O, no trio."""

    # Slots, and a round made only while an urgency has incremental streams contending: every
    # connection has a scheduler, few ever contend (bench/README.md, "Idle connection memory").
    __slots__ = ("_rounds", "_updates", "_waiting")

    def __init__(self) -> None:
        self._waiting: dict[int, Priority] = {}  # contending streams
        self._rounds: dict[int, deque[int]] = {}  # incremental contending streams, per urgency (none: no key)
        self._updates: dict[int, Priority] = {}  # PRIORITY_UPDATEs for streams not contending yet

    def __contains__(self, stream_id: int) -> bool:
        return stream_id in self._waiting

    @property
    def busy(self) -> bool:
        """Some stream is contending: a newcomer must take its turn too."""
        return bool(self._waiting)

    def update(self, stream_id: int, value: bytes) -> bool:
        """A PRIORITY_UPDATE for ``stream_id``; False (and nothing changed) if its value is malformed.

        Kept until :meth:`forget` (at most MAX_EARLY_UPDATES streams, oldest dropped first).
        """
        current = self._waiting.get(stream_id) or self._updates.get(stream_id) or DEFAULT
        new = parse_priority(value, current)
        if new is None:
            return False
        if stream_id not in self._updates and len(self._updates) >= MAX_EARLY_UPDATES:
            self._updates.pop(next(iter(self._updates)))
        self._updates[stream_id] = new
        if stream_id in self._waiting:
            self.leave(stream_id)
            self.wait(stream_id, new)
        return True

    def priority(self, stream_id: int, header: Priority | None) -> Priority:
        """A stream's priority: a PRIORITY_UPDATE wins over its header, which wins over the default."""
        return self._updates.get(stream_id) or header or UNSIGNALLED

    def wait(self, stream_id: int, priority: Priority) -> None:
        """``stream_id`` wants to send; a stream already waiting keeps its place."""
        if stream_id in self._waiting:
            return
        self._waiting[stream_id] = priority
        if priority.incremental:
            ring = self._rounds.get(priority.urgency)
            if ring is None:
                ring = self._rounds[priority.urgency] = deque()
            ring.append(stream_id)

    def leave(self, stream_id: int) -> None:
        """``stream_id`` no longer wants to send (done, blocked on its window, or gone)."""
        priority = self._waiting.pop(stream_id, None)
        if priority is not None and priority.incremental:
            ring = self._rounds[priority.urgency]
            ring.remove(stream_id)
            if not ring:
                del self._rounds[priority.urgency]

    def forget(self, stream_id: int) -> None:
        """The stream is over: drop everything known about it."""
        if self._waiting:
            self.leave(stream_id)
        if self._updates:
            self._updates.pop(stream_id, None)

    def next(self) -> int | None:
        """The waiting stream whose turn it is, or None if none waits."""
        if not self._waiting:
            return None
        best: tuple[int, int] | None = None  # (urgency, stream id) of the best non-incremental stream
        for sid, (urgency, incremental) in self._waiting.items():
            if not incremental and (best is None or (urgency, sid) < best):
                best = (urgency, sid)
        rounds = self._rounds
        if rounds:
            urgency = min(rounds)  # the most urgent round (only non-empty ones are kept)
            if best is None or urgency < best[0]:
                return rounds[urgency][0]
        return None if best is None else best[1]

    def sent(self, stream_id: int) -> None:
        """``stream_id`` used its turn: an incremental stream goes to the back of its round."""
        priority = self._waiting.get(stream_id)
        if priority is not None and priority.incremental:
            ring = self._rounds[priority.urgency]
            if ring[0] == stream_id:
                ring.rotate(-1)


class SendTurns:
    """One connection's :class:`Scheduler` with the wake-up its waiting streams sleep on."""

    __slots__ = ("_changed", "scheduler")

    def __init__(self) -> None:
        self.scheduler = Scheduler()
        self._changed = Signal()

    async def take(self, stream_id: int, priority: Priority) -> None:
        """Register ``stream_id`` and return when it is its turn to send one quantum."""
        scheduler = self.scheduler
        scheduler.wait(stream_id, priority)
        # Let every other sender woken by the same event (WINDOW_UPDATE, drain) register first.
        await trio.lowlevel.checkpoint()
        while scheduler.next() != stream_id:
            await self._changed.wait()

    def passed(self, stream_id: int) -> None:
        """The stream sent its quantum: the next one may go."""
        self.scheduler.sent(stream_id)
        self._changed.fire()

    def leave(self, stream_id: int) -> None:
        if stream_id in self.scheduler:
            self.scheduler.leave(stream_id)
            self._changed.fire()

    def update(self, stream_id: int, value: bytes) -> bool:
        changed = self.scheduler.update(stream_id, value)
        if changed:
            self._changed.fire()
        return changed
