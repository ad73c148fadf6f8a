"""``wsgi.input``: the request body, pulled from the exchange as the app reads it.

Each refill runs :meth:`Stream.read` in the trio thread, which is also what
acknowledges the bytes to h2 (and so sends WINDOW_UPDATE): the client may send
more only once the app has taken what it sent. At most one refill (bounded by
the stream window) plus what the app asked for is held here.
"""

from __future__ import annotations

from collections.abc import Iterator

from h2gate.protocol.stream import Stream
from h2gate.wsgi.bridge import to_trio


class InputStream:
    def __init__(self, exchange: Stream, at_end: bool = False) -> None:
        self._exchange = exchange
        self._buf = bytearray()
        self._eof = at_end
        self.bytes_read = 0

    def _fill(self) -> bool:
        """Pull the next piece of body into the buffer; False at the end of the body."""
        if self._eof:
            return False
        data = to_trio(self._exchange.read)
        if not data:
            self._eof = True
            return False
        self._buf += data
        return True

    def _take(self, size: int) -> bytes:
        data = bytes(self._buf[:size])
        del self._buf[:size]
        self.bytes_read += len(data)
        return data

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            while self._fill():
                pass
            return self._take(len(self._buf))
        while len(self._buf) < size and self._fill():
            pass
        return self._take(size)

    def readline(self, size: int | None = -1) -> bytes:
        limit = -1 if size is None or size < 0 else size
        scanned = 0
        while True:
            end = self._buf.find(b"\n", scanned)
            if end >= 0:
                n = end + 1
                return self._take(n if limit < 0 else min(n, limit))
            if 0 <= limit <= len(self._buf):
                return self._take(limit)
            scanned = len(self._buf)
            if not self._fill():
                return self._take(len(self._buf))

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        lines: list[bytes] = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def close(self) -> None:
        """Nothing to release: unread body bytes are given back when the stream ends."""
