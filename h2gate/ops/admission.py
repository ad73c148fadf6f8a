"""Who gets in at ``--max-connections``: room is made by closing stalled handshakes and idle connections first.

Theory of operation
-------------------
Every accepted connection has an :class:`Entry`, oldest first, from accept
until its task ends. While the table is under the limit a newcomer is simply
let in. At the limit it looks for a connection to give up, in this order:

1. the oldest *handshake* (TLS, PROXY header, h2c preface or HTTP/1.1 request
   not finished) that has lasted at least ``STALLED_AFTER`` seconds: a client
   this slow is most likely one that will never finish (slowloris), and
   cancelling it costs nobody a request;
2. the oldest *idle* HTTP/2 connection (no open stream): it gets a graceful
   GOAWAY, so its client opens a new connection when it next needs one, as
   nginx does with its idle keepalive connections.

Only when every connection is busy (streams open, a WebSocket, a young
handshake) is the newcomer refused: closed right after accept. A connection
given up is no longer counted; it needs a moment to close (a GOAWAY flushed,
a lingering read), and at most ``max(16, limit // 8)`` may be closing at once,
so the process holds a bounded number of descriptors beyond the limit.

Refusals and evictions come in bursts: :meth:`Admission.take_burst` hands
the counts to one log line once the burst is over (see
:meth:`h2gate.ops.server.Server._report_admission`).

Pure bookkeeping, no I/O: the caller cancels or shuts down what it is told to.
From the protocol connection it uses only ``conn.open_streams`` (its open
streams) and, through the caller, ``conn.shutdown()``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import trio

#: Seconds after which an unfinished handshake counts as stalled (may be closed to make room).
STALLED_AFTER = 1.0


class Phase(enum.Enum):
    HANDSHAKE = "handshake"  # not yet speaking HTTP/2 (or a WebSocket)
    HTTP2 = "http2"  # a protocol Connection runs: idle when it has no open stream
    OTHER = "other"  # an HTTP/1.1 WebSocket session: never closed to make room


@dataclass(eq=False, slots=True)
class Entry:
    accepted: float
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    phase: Phase = Phase.HANDSHAKE
    conn: Any = None  # the protocol Connection, once HTTP/2 runs
    evicted: bool = False

    def serving(self, conn: Any) -> None:
        """HTTP/2 runs on this connection now (``conn`` is the protocol Connection)."""
        self.phase, self.conn = Phase.HTTP2, conn

    def other(self) -> None:
        """Something that is neither a handshake nor HTTP/2 (a WebSocket over HTTP/1.1) runs on it."""
        self.phase = Phase.OTHER

    def idle(self) -> bool:
        return self.phase is Phase.HTTP2 and not self.conn.open_streams


@dataclass
class Burst:
    """What happened at the limit since the last report."""

    refused: int = 0
    handshakes: int = 0
    idle: int = 0
    started: float = 0.0


class Admission:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.closing_limit = max(16, limit // 8)
        self._entries: dict[Entry, None] = {}  # insertion order: oldest first
        self._active = 0  # entries not evicted
        self._burst = Burst()
        self.burst_event = trio.Event()  # set at the first refusal or eviction of a burst

    @property
    def active(self) -> int:
        return self._active

    def admit(self, now: float) -> tuple[Entry | None, Entry | None]:
        """A newcomer: (its entry, or None to refuse it; a connection the caller must close to make room)."""
        victim = None
        if self._active >= self.limit:
            victim = self._victim(now)
            if victim is None:
                self._note(now, "refused")
                return None, None
            victim.evicted = True
            self._active -= 1
            self._note(now, "handshakes" if victim.phase is Phase.HANDSHAKE else "idle")
        entry = Entry(now)
        self._entries[entry] = None
        self._active += 1
        return entry, victim

    def leave(self, entry: Entry) -> None:
        """The connection's task ended."""
        if entry in self._entries:
            del self._entries[entry]
            if not entry.evicted:
                self._active -= 1

    def _victim(self, now: float) -> Entry | None:
        if len(self._entries) - self._active >= self.closing_limit:
            return None  # enough are closing already: do not trade descriptors faster than they free up
        idle = None
        for entry in self._entries:  # oldest first
            if entry.evicted:
                continue
            if entry.phase is Phase.HANDSHAKE and now - entry.accepted >= STALLED_AFTER:
                return entry
            if idle is None and entry.idle():
                idle = entry
        return idle

    def _note(self, now: float, what: str) -> None:
        if not self.burst_event.is_set():
            self._burst = Burst(started=now)
            self.burst_event.set()
        setattr(self._burst, what, getattr(self._burst, what) + 1)

    def take_burst(self) -> Burst:
        """The counts since the burst began; the next refusal or eviction starts a new one."""
        burst, self._burst = self._burst, Burst()
        self.burst_event = trio.Event()
        return burst

    def quiet_since(self) -> int:
        """A change counter: equal on two calls means nothing happened at the limit in between."""
        b = self._burst
        return b.refused + b.handshakes + b.idle
