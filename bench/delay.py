"""A delaying TCP proxy on 127.0.0.1: a link with a round-trip time, and optionally a rate, for one-host tests.

This kernel has no ``netem`` qdisc, so a long path is played by a proxy: each
byte read from one side is written to the other ``rtt / 2`` seconds later
(both directions, so a round trip takes ``rtt``), no faster than ``rate``
bytes a second if one is given. The legs to the client and to the server are
loopback TCP, whose own round trip is negligible: what limits a transfer over
the proxy is HTTP/2 flow control, the endpoints' buffering and the rate, as
over a real path of that length.

Theory of operation. Per connection and direction, a reader thread stamps
each chunk with the moment it may leave and queues it; a writer thread sleeps
until that moment (and until the rate allows), then writes it. The queue is
the link's pipe: the bytes in it are the bytes *in flight*, which the proxy
records (``Pipe.most``), a figure in bytes that tells a window-bound transfer
(at most a window in flight) from one that is not. The pipe holds at most
``limit`` bytes: a full pipe stops the reader, so TCP pushes back on the
sender as a router's full queue would (``limit`` defaults to the
bandwidth-delay product plus a margin, or 16 MiB without a rate). Every
thread is a daemon bound to its sockets; :meth:`DelayProxy.close` closes them
all, which ends every loop.
"""

from __future__ import annotations

import collections
import socket
import threading
import time
from types import TracebackType

HOST = "127.0.0.1"
CHUNK = 64 * 1024
UNLIMITED_PIPE = 16 * 1024 * 1024


class Pipe:
    """One direction of one connection: the bytes in flight, and the most there ever were."""

    def __init__(self, delay: float, rate: float | None, limit: int) -> None:
        self.delay = delay
        self.rate = rate
        self.limit = limit
        self.queue: collections.deque[tuple[float, bytes | None]] = collections.deque()
        self.cond = threading.Condition()
        self.in_flight = 0
        self.most = 0  # the largest in_flight seen
        self.total = 0  # bytes carried
        self.closed = False

    def put(self, data: bytes | None) -> bool:
        """Queue ``data`` (None: the sender's EOF) to leave after the delay; False once the pipe is closed."""
        with self.cond:
            while data and self.in_flight >= self.limit and not self.closed:
                self.cond.wait(0.5)
            if self.closed:
                return False
            self.queue.append((time.monotonic() + self.delay, data))
            if data:
                self.in_flight += len(data)
                self.most = max(self.most, self.in_flight)
            self.cond.notify_all()
            return True

    def take(self) -> tuple[float, bytes | None] | None:
        """The next chunk and when it may leave; None once the pipe is closed."""
        with self.cond:
            while not self.queue and not self.closed:
                self.cond.wait(0.5)
            if self.closed:
                return None
            return self.queue.popleft()

    def sent(self, size: int) -> None:
        with self.cond:
            self.in_flight -= size
            self.total += size
            self.cond.notify_all()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()


def _read(source: socket.socket, pipe: Pipe) -> None:
    try:
        while True:
            data = source.recv(CHUNK)
            if not pipe.put(data or None) or not data:
                return
    except OSError:
        pipe.put(None)


def _write(pipe: Pipe, sink: socket.socket) -> None:
    free_at = 0.0  # when the link has sent the previous chunk (with a rate)
    try:
        while True:
            item = pipe.take()
            if item is None:
                return
            due, data = item
            if data is None:
                sink.shutdown(socket.SHUT_WR)
                return
            if pipe.rate:
                due = max(due, free_at)
                free_at = due + len(data) / pipe.rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            sink.sendall(data)
            pipe.sent(len(data))
    except OSError:
        pass
    finally:
        pipe.close()


class DelayProxy:
    """Listen on a free 127.0.0.1 port; relay each connection to ``upstream`` over a path of ``rtt`` seconds.

    ``rate``: bytes per second each direction carries at most (None: as fast
    as the threads go). ``pipes`` keeps both directions of every connection,
    ``(to_server, to_client)``, for the caller to read their figures.
    """

    def __init__(self, upstream: int, rtt: float, rate: float | None = None, limit: int | None = None) -> None:
        self.upstream = upstream
        self.rtt = rtt
        self.rate = rate
        if limit is None:
            limit = UNLIMITED_PIPE if rate is None else int(rate * rtt / 2) + 1024 * 1024
        self.limit = limit
        self.pipes: list[tuple[Pipe, Pipe]] = []
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server((HOST, 0))
        self._listener.settimeout(0.5)
        self.port: int = self._listener.getsockname()[1]
        self._closed = False
        self._thread = threading.Thread(target=self._accept, name="delay-proxy", daemon=True)
        self._thread.start()

    def __enter__(self) -> DelayProxy:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection((HOST, self.upstream), timeout=5)
            except OSError:
                client.close()
                continue
            for sock in (client, server):
                sock.settimeout(None)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            one_way = self.rtt / 2
            up, down = Pipe(one_way, self.rate, self.limit), Pipe(one_way, self.rate, self.limit)
            with self._lock:
                if self._closed:
                    client.close()
                    server.close()
                    return
                self._sockets += [client, server]
                self.pipes.append((up, down))
            for target, args in (
                (_read, (client, up)),
                (_write, (up, server)),
                (_read, (server, down)),
                (_write, (down, client)),
            ):
                threading.Thread(target=target, args=args, daemon=True).start()

    def close(self) -> None:
        """Stop accepting, close every relayed connection; every thread then ends."""
        with self._lock:
            self._closed = True
            sockets, self._sockets = self._sockets, []
        self._listener.close()
        for up, down in self.pipes:
            up.close()
            down.close()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        self._thread.join(timeout=2)
