"""Sending on a connected TCP or unix socket without trio's per-call machinery.

``trio.SocketStream.send_all`` wraps every ``send`` in a conflict detector, a
context manager that translates errors and a cancel-shielded checkpoint: one
trip through the scheduler per call, taken even when the kernel accepts the
whole buffer at once, which on a download is nearly every call. The writer of
a connection is the only task sending on its socket (ARCHITECTURE.md, "One
writer"), so none of that protection is needed there: :class:`RawSender` is a
plain non-blocking ``send`` loop that waits only when the socket buffer is
full. Errors map as trio maps them: Closed after we closed the socket, Broken
for anything the transport reports.
"""

from __future__ import annotations

import errno
import math
import os
from collections.abc import Awaitable, Callable

import trio

from h2gate.compiled import caused
from h2gate.errors import SendTimeout

__all__ = ["RawSender", "SendTimeout", "sender", "within"]  # SendTimeout: h2gate.errors, raised here

#: ``send(data, deadline)``: all of ``data`` handed to the transport, or SendTimeout once ``deadline`` passes.
Send = Callable[[bytes | bytearray | memoryview, float], Awaitable[None]]


class RawSender:
    """``send_all`` for one trio socket, plus a synchronous attempt (:meth:`send_now`)."""

    __slots__ = ("_fd", "_socket")

    def __init__(self, trio_socket: trio.socket.SocketType) -> None:
        self._socket = trio_socket
        self._fd = trio_socket.fileno()  # trio sockets are non-blocking

    def send_now(self, view: memoryview) -> int:
        """Send what the kernel takes now, without waiting; the count sent (0 if the buffer is full).

        Python ignores SIGPIPE, so a peer gone away is an EPIPE error here.
        """
        if self._socket.fileno() == -1:  # closed by us: the fd may already belong to someone else
            raise trio.ClosedResourceError("socket was already closed")
        try:
            return os.write(self._fd, view)
        except BlockingIOError:
            return 0
        except OSError as exc:
            if exc.errno == errno.EBADF:
                raise caused(trio.ClosedResourceError("socket was closed"), exc)
            raise caused(trio.BrokenResourceError(f"socket send failed: {exc!r}"), exc)

    async def send_all(self, data: bytes | bytearray | memoryview, deadline: float = math.inf) -> None:
        """Send all of ``data``, waiting for the socket when it is full; SendTimeout past ``deadline``."""
        view = memoryview(data)
        while view:
            sent = self.send_now(view)
            if sent:
                view = view[sent:]
            elif deadline == math.inf:
                await trio.lowlevel.wait_writable(self._socket)
            else:
                with trio.move_on_at(deadline):
                    await trio.lowlevel.wait_writable(self._socket)
                if trio.current_time() >= deadline:
                    raise SendTimeout(f"the peer did not take {len(view)} bytes before the send deadline")


def raw_sender(stream: trio.abc.SendStream) -> RawSender | None:
    """A :class:`RawSender` for a trio SocketStream; None for any other stream."""
    return RawSender(stream.socket) if isinstance(stream, trio.SocketStream) else None


def within(send_all: Callable[[bytes | bytearray | memoryview], Awaitable[None]]) -> Send:
    """A plain ``send_all`` with a deadline, for streams that have none of their own (a cancel scope per call)."""

    async def send(data: bytes | bytearray | memoryview, deadline: float) -> None:
        if deadline == math.inf:
            await send_all(data)
            return
        with trio.move_on_at(deadline) as stall:
            await send_all(data)
        if stall.cancelled_caught:
            raise SendTimeout("the peer did not take our bytes before the send deadline")

    return send


def sender(stream: trio.abc.SendStream) -> Send:
    """The cheapest correct ``send(data, deadline)`` for ``stream``: its own, the raw loop, or :func:`within`."""
    own = getattr(stream, "send_all_by", None)
    if own is not None:
        return own  # type: ignore[no-any-return]
    raw = raw_sender(stream)
    return within(stream.send_all) if raw is None else raw.send_all
