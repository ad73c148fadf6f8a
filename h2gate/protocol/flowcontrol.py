"""Adaptive receive windows: how far ahead of the app a client may send a request body.

Theory of operation. A client sends request body bytes only as far as our
receive windows reach, and gets credit back as the app consumes them
(invariant 4). With a fixed window ``W`` an upload moves at most about one
window per round trip, and less in practice: the codecs give credit back once
half a window has been consumed (h2 and libnghttp2 both), so the client keeps
the link busy only while ``W`` is at least twice the bytes that cross it per
round trip. 256 KiB over a 50 ms path caps an upload near 5 MB/s whatever the
link. :class:`ReceiveWindows` sizes the windows from what it measures:

* **What it measures.** While a tracked body flows, the core sends a PING (one
  at a time, only while the connection is open). Between the PING and its ACK
  it counts the body bytes the app *consumed*, per stream and for the
  connection: the bytes one round trip carried at the pace the app reads, the
  bandwidth-delay product that matters here. The round trip itself is kept
  (smoothed) for the log and the tests.
* **Growing.** A sample of at least :data:`GROW_AT` of a window means the
  window may be what holds the client back: the window doubles, or goes to
  four times the sample if that is more, within its cap. While a window grows
  the next PING follows the ACK at once, so a window reaches its size in a
  few round trips; a sample that grows nothing spaces the next ones out
  (:data:`FIRST_GAP`, doubling to :data:`MAX_GAP`).
* **Caps.** A stream's window never exceeds ``--max-window-size``, nor what
  its declared content-length or ``--max-body-size`` leave room for; the
  connection's never exceeds ``--max-connection-window-size``. The connection
  grows from its own sample, and to at least the largest stream window (one
  stream could not use a stream window the connection does not match).
* **Who is tracked.** Only requests whose body could outgrow the initial
  window (no content-length, or a larger one, under ``--max-body-size``): a
  small POST costs nothing here. A new body starts from the window recent
  bodies needed (:attr:`ReceiveWindows.learned`), opened at once.
* **Shrinking.** A tracked stream whose app took nothing for :data:`IDLE`
  seconds goes back to the initial window; once no tracked stream has taken
  anything for that long, the connection and :attr:`~ReceiveWindows.learned`
  go back too. Shrinking withholds the credit of the next bytes consumed
  (the codec's part): what the client was already granted is not taken back.
* **Memory.** The codec refuses DATA beyond the advertised windows, so a
  connection buffers at most its window of unread request bytes, and windows
  grow only from bytes the app actually took. A client that delays its PING
  ACKs inflates the round trip and so the sample, but never past the caps.

Pure bookkeeping: no I/O and no clock. The core passes the time, sends the
PINGs this asks for, and applies the window sizes it returns through
:meth:`h2gate.protocol.codec.Codec.set_receive_window`.
"""

from __future__ import annotations

import math

#: A sample of at least this share of a window makes it grow (the codecs credit half a window at a time).
GROW_AT = 0.4
#: Seconds without consumption after which a window goes back to its initial size.
IDLE = 2.0
#: Seconds between samples once one found nothing to grow: the first gap, doubling up to the last.
FIRST_GAP, MAX_GAP = 0.1, 2.0
#: A PING not acknowledged within this many seconds is given up (a later ACK of it is ignored).
PING_EXPIRY = 5.0
#: The first bytes of our PINGs' opaque data (a counter follows); a drain's PING is random.
PING_PREFIX = b"h2rw"

#: A window change to apply: (stream id, new size); stream id 0 is the connection.
Change = tuple[int, int]


class _Tracked:
    """One tracked stream: its window, what caps it, and its consumption."""

    __slots__ = ("last", "limit", "sample", "size")

    def __init__(self, size: int, limit: int, now: float) -> None:
        self.size = size  # the window it has now
        self.limit = limit  # the most it may grow to
        self.sample = 0  # bytes consumed since the outstanding PING went out
        self.last = now  # when the app last took bytes (or tracking began)


class ReceiveWindows:
    """One connection's adaptive receive windows (see the module docstring)."""

    __slots__ = (
        "_count", "_gap", "_last", "_next_ping", "_ping", "_sample", "_sent", "_streams", "connection",
        "connection_initial", "connection_max", "learned", "rtt", "stream_initial", "stream_max",
    )  # fmt: skip

    def __init__(self, *, stream_initial: int, stream_max: int, connection_initial: int, connection_max: int) -> None:
        self.stream_initial = stream_initial
        self.stream_max = max(stream_max, stream_initial)
        self.connection_initial = connection_initial
        self.connection_max = max(connection_max, connection_initial)
        self.connection = connection_initial  # the connection's window now
        #: The stream window recent bodies grew to: a new body starts there.
        self.learned = stream_initial
        #: The smoothed round trip (seconds) of our PINGs, once one was acknowledged.
        self.rtt: float | None = None
        self._streams: dict[int, _Tracked] = {}
        self._ping: bytes | None = None  # the opaque data of the PING awaiting its ACK
        self._sent = 0.0  # when that PING was queued
        self._count = 0  # PINGs sent so far (their opaque data counts them)
        self._sample = 0  # connection bytes consumed since the PING
        self._next_ping = 0.0  # no PING before this
        self._gap = FIRST_GAP  # the pause after a sample that grew nothing
        self._last = -math.inf  # when a tracked stream last consumed anything

    # -- streams ------------------------------------------------------------------------------------

    def __contains__(self, stream_id: int) -> bool:
        return stream_id in self._streams

    def track(self, stream_id: int, limit: int, now: float) -> int | None:
        """Track a body that may use up to ``limit`` bytes of window; the window to open it to now, if any.

        ``limit`` is what its content-length and --max-body-size leave, or
        anything larger; the stream cap applies on top.
        """
        limit = min(limit, self.stream_max)
        size = min(limit, self.learned)
        self._streams[stream_id] = _Tracked(max(size, self.stream_initial), limit, now)
        self._next_ping = min(self._next_ping, now + FIRST_GAP)  # sample the newcomer soon
        if size <= self.stream_initial:
            return None
        return size

    def forget(self, stream_id: int) -> None:
        """The body ended or the stream is gone: its window no longer matters."""
        self._streams.pop(stream_id, None)

    def consumed(self, stream_id: int, size: int, now: float) -> None:
        """The app took ``size`` bytes of ``stream_id``'s body."""
        tracked = self._streams.get(stream_id)
        if tracked is None:
            return
        tracked.sample += size
        tracked.last = now
        self._sample += size
        self._last = now

    # -- measuring -----------------------------------------------------------------------------------

    def ping_due(self, now: float) -> bytes | None:
        """The opaque data of a PING to send now (a tracked body is flowing), or None.

        One PING at a time, none while nothing could grow, and after a sample
        that grew nothing, none before the gap has passed.
        """
        if self._ping is not None:
            if now - self._sent < PING_EXPIRY:
                return None
            self._ping = None  # lost, or the client does not answer: try again
        if now < self._next_ping or not self._can_grow():
            return None
        self._count += 1
        self._ping = PING_PREFIX + self._count.to_bytes(4, "big")
        self._sent = now
        self._sample = 0
        for tracked in self._streams.values():
            tracked.sample = 0
        return self._ping

    def _can_grow(self) -> bool:
        if self.connection < self.connection_max:
            return True
        return any(t.size < t.limit for t in self._streams.values())

    def acked(self, data: bytes, now: float) -> list[Change] | None:
        """A PING's ACK: the windows to set now (possibly none); None if the PING was not ours."""
        if self._ping is None or data != self._ping:
            return None
        self._ping = None
        rtt = now - self._sent
        self.rtt = rtt if self.rtt is None else self.rtt + (rtt - self.rtt) / 8
        changes: list[Change] = []
        largest = 0
        for stream_id, tracked in self._streams.items():
            if tracked.sample >= GROW_AT * tracked.size and tracked.size < tracked.limit:
                tracked.size = min(tracked.limit, max(2 * tracked.size, 4 * tracked.sample))
                changes.append((stream_id, tracked.size))
                self.learned = max(self.learned, tracked.size)
            largest = max(largest, tracked.size)
        target = self.connection
        if self._sample >= GROW_AT * target:
            target = max(2 * target, 4 * self._sample)
        target = min(self.connection_max, max(target, largest))
        if target > self.connection:
            self.connection = target
            changes.insert(0, (0, target))  # the connection first: the streams' credit is usable at once
        if changes:
            self._next_ping = now  # keep sampling while windows grow
        else:
            self._next_ping = now + self._gap
            self._gap = min(MAX_GAP, 2 * self._gap)
        return changes

    # -- shrinking -------------------------------------------------------------------------------------

    @property
    def next_check(self) -> float:
        """When :meth:`idle` may next have a window to shrink (inf: every window is at its initial size)."""
        due = math.inf
        for tracked in self._streams.values():
            if tracked.size > self.stream_initial:
                due = min(due, tracked.last + IDLE)
        if self.connection > self.connection_initial or self.learned > self.stream_initial:
            due = min(due, max([self._last, *(t.last for t in self._streams.values())]) + IDLE)
        return due

    def idle(self, now: float) -> list[Change]:
        """Shrink the windows of streams idle for :data:`IDLE` seconds, and the connection's once all are."""
        changes: list[Change] = []
        busy = self._last > now - IDLE
        for stream_id, tracked in self._streams.items():
            if tracked.last > now - IDLE:
                busy = True
            elif tracked.size > self.stream_initial:
                tracked.size = self.stream_initial
                changes.append((stream_id, tracked.size))
        if not busy:
            self.learned = self.stream_initial
            self._gap = FIRST_GAP
            if self.connection > self.connection_initial:
                self.connection = self.connection_initial
                changes.append((0, self.connection))
        return changes
