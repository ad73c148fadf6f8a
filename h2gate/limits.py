"""Per-connection accounting of what a client may do: pure bookkeeping, no I/O.

The connection asks these objects and acts on the answer (RST_STREAM, GOAWAY),
so the rules can be tested without a socket.
"""

from __future__ import annotations

from collections import deque


class ResetBudget:
    """Stream resets in the last second: the client's own and those its mistakes made us send.

    Counting both stops Rapid Reset (CVE-2023-44487) and MadeYouReset
    (CVE-2025-8671) alike.
    """

    def __init__(self, per_second: int) -> None:
        self.per_second = per_second
        self._times: deque[float] = deque()

    def spend(self, now: float) -> bool:
        """Record one reset at ``now``; True once the budget is exceeded."""
        times = self._times
        times.append(now)
        while times and times[0] < now - 1.0:
            times.popleft()
        return len(times) > self.per_second


class BodyLengths:
    """A request's content-length against the DATA it really carries (RFC 9113 §8.1.1)."""

    def __init__(self) -> None:
        self._left: dict[int, int] = {}

    def expect(self, stream_id: int, headers: list[tuple[bytes, bytes]]) -> None:
        """Start counting; the value was already checked to be digits by h2gate.validate."""
        length = next((int(value) for name, value in headers if name == b"content-length"), None)
        if length is not None:
            self._left[stream_id] = length

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
