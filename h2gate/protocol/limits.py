"""Per-connection accounting of what a client may do: pure bookkeeping, no I/O.

The connection asks these objects and acts on the answer (RST_STREAM, GOAWAY),
so the rules can be tested without a socket.
"""

from __future__ import annotations

#: Writer queue size above which a sending stream waits for the socket to drain.
HIGH_WATER = 256 * 1024


#: Every empty ``_Recent``'s entries: shared, so never appended to (``add`` makes a list first).
_NONE: list[tuple[float, int]] = []


class _Recent:
    """(time, count) entries of the last second, oldest first, with their running total.

    A list read from a moving head, compacted now and then: a connection that
    was busy for a moment and then sits idle keeps a few dozen bytes here, not
    the half-KiB block a ``deque`` holds from its first entry on. Pruning stays
    amortised O(1) per entry.
    """

    __slots__ = ("_head", "_items", "total")

    def __init__(self) -> None:
        self._items: list[tuple[float, int]] = _NONE  # a list of its own while it holds entries
        self._head = 0  # entries before this index have aged out
        self.total = 0

    def add(self, now: float, count: int) -> None:
        items = self._items
        if items is _NONE:
            items = self._items = []
        items.append((now, count))
        self.total += count

    def prune(self, before: float) -> None:
        """Drop the entries older than ``before``."""
        items, head = self._items, self._head
        end = len(items)
        while head < end and items[head][0] < before:
            self.total -= items[head][1]
            head += 1
        if head == end:
            self._items = _NONE  # an idle connection keeps no list per budget
            head = 0
        elif head > 32 and head * 2 > end:
            del items[:head]
            head = 0
        self._head = head


class RateBudget:
    """Events in the last second, counted in batches; the caller reacts once the rate is exceeded.

    Batches keep the bookkeeping to one entry per read even when a single read
    carries thousands of frames (an empty-frame flood).
    """

    __slots__ = ("_spent", "per_second")

    def __init__(self, per_second: int) -> None:
        self.per_second = per_second
        self._spent = _Recent()

    @property
    def holding(self) -> bool:
        """Whether any event is remembered."""
        return bool(self._spent._items)

    def trim(self, now: float) -> None:
        """Drop the events more than a second old (the connection is idle: nothing else would)."""
        self._spent.prune(now - 1.0)

    def spend(self, now: float, count: int = 1) -> bool:
        """Record ``count`` events at ``now``; True once more than ``per_second`` fall within a second."""
        spent = self._spent
        spent.add(now, count)
        spent.prune(now - 1.0)
        return spent.total > self.per_second


class EarnedBudget(RateBudget):
    """A per-second budget that the connection's own traffic widens: each :meth:`earn` allows that many more.

    WINDOW_UPDATEs answer the DATA we send: a client reading a fast download
    sends one or two per DATA frame, a flood sends them for nothing.
    """

    __slots__ = ("_earned",)

    def __init__(self, per_second: int) -> None:
        super().__init__(per_second)
        self._earned = _Recent()

    @property
    def holding(self) -> bool:
        return bool(self._spent._items or self._earned._items)

    def trim(self, now: float) -> None:
        super().trim(now)
        self._earned.prune(now - 1.0)

    def earn(self, now: float, count: int) -> None:
        earned = self._earned
        earned.add(now, count)
        earned.prune(now - 1.0)  # bounded even when the client never sends a WINDOW_UPDATE to spend

    def spend(self, now: float, count: int = 1) -> bool:
        self._earned.prune(now - 1.0)
        over = super().spend(now, count)
        return over and self._spent.total > self.per_second + self._earned.total


class ResetBudget(RateBudget):
    """Stream resets in the last second: the client's own and those its mistakes made us send.

    Counting both stops Rapid Reset (CVE-2023-44487) and MadeYouReset
    (CVE-2025-8671) alike.
    """

    __slots__ = ()


class BodySizes:
    """Request body bytes received per stream against ``--max-body-size`` (0: no limit)."""

    __slots__ = ("_received", "_refused", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._received: dict[int, int] = {}
        self._refused: dict[int, None] = {}  # answered 413: their DATA is dropped, not reset (a dict: smaller)

    def too_large(self, declared: int | None) -> bool:
        """Whether a declared content-length is over the limit (answered with 413 before the app runs)."""
        return bool(self.limit) and declared is not None and declared > self.limit

    def refuse(self, stream_id: int) -> None:
        """The stream gets a 413; DATA already on the wire must not turn that into a reset."""
        self._refused[stream_id] = None

    def add(self, stream_id: int, size: int) -> bool:
        """Count ``size`` more bytes; True the first time the stream's body is over the limit."""
        if not self.limit or stream_id in self._refused:
            return False
        total = self._received.get(stream_id, 0) + size
        self._received[stream_id] = total
        return total > self.limit >= total - size

    def forget(self, stream_id: int) -> None:
        self._received.pop(stream_id, None)
        self._refused.pop(stream_id, None)


class Throttle:
    """Collapses a burst of like events into one log line per ``interval`` seconds."""

    __slots__ = ("_last", "_pending", "interval")

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self._pending = 0
        self._last = -float("inf")

    def note(self, now: float) -> int:
        """Count one event; returns how many to report now (0: stay quiet)."""
        self._pending += 1
        if now - self._last < self.interval:
            return 0
        count, self._pending, self._last = self._pending, 0, now
        return count


class BodyLengths:
    """A request's content-length against the DATA it really carries (RFC 9113 §8.1.1)."""

    __slots__ = ("_left",)

    def __init__(self) -> None:
        self._left: dict[int, int] = {}

    def expect(self, stream_id: int, headers: list[tuple[bytes, bytes]]) -> int | None:
        """Start counting; returns the declared length (already checked to be digits by h2gate.http.validate)."""
        length = next((int(value) for name, value in headers if name == b"content-length"), None)
        if length is not None:
            self._left[stream_id] = length
        return length

    def data(self, stream_id: int, size: int) -> str | None:
        """Count ``size`` body bytes; the problem in words when they exceed the declared length."""
        left = self._left.get(stream_id)
        if left is None:
            return None
        left -= size
        if left < 0:
            del self._left[stream_id]
            return "more DATA than content-length"
        self._left[stream_id] = left
        return None

    def end(self, stream_id: int) -> str | None:
        """The body ended; the problem in words when it was shorter than declared."""
        return "less DATA than content-length" if self._left.pop(stream_id, 0) > 0 else None

    def forget(self, stream_id: int) -> None:
        self._left.pop(stream_id, None)
