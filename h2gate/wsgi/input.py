"""``wsgi.input``: the request body, pulled from the exchange as the app reads it.

Each refill runs :meth:`Stream.read` in the trio thread, which is also what
acknowledges the bytes to h2 (and so sends WINDOW_UPDATE): the client may send
more only once the app has taken what it sent. At most one refill (bounded by
the stream window) plus what the app asked for is held here.

``read(size)`` waits for ``size`` bytes (or the end), as a file's would,
except on a streamed RPC request: a body without content-length whose
content-type is gRPC (``application/grpc``, ``+proto``...), gRPC-Web or a
Connect stream (``application/connect+...``). There it returns as soon as
some bytes have arrived, up to ``size``: those protocols are full duplex, a
client may send its next message only after it got a reply, and their
servers (connectrpc) read in large blocks and frame messages themselves.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from h2gate.protocol.stream import Stream
from h2gate.wsgi.bridge import to_trio

#: Content types of full-duplex RPC streams, whose reads return what has arrived (see the module docstring).
_RPC_STREAM_TYPES = ("application/grpc", "application/connect+")


def is_rpc_stream(environ: dict[str, Any]) -> bool:
    """A streamed gRPC, gRPC-Web or Connect-streaming request body: short reads are what its app needs."""
    content_type = environ.get("CONTENT_TYPE", "").lower()
    return "CONTENT_LENGTH" not in environ and content_type.startswith(_RPC_STREAM_TYPES)


class InputStream:
    def __init__(self, exchange: Stream, at_end: bool = False, *, partial: bool = False) -> None:
        self._exchange = exchange
        self._buf = bytearray()
        self._eof = at_end
        self._partial = partial  # read(size) returns once something has arrived
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
        if self._partial and size:
            if not self._buf:
                self._fill()
            return self._take(size)
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
