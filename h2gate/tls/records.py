"""The record plumbing under :class:`h2gate.tls.stream.TLSStream`: BIOs to the transport, in order.

Theory of operation
-------------------
The TLS stream's OpenSSL session works on memory BIOs (its module docstring
says why); this base class holds that session's state and the few steps every
path shares: draining what OpenSSL wrote, sending it, decrypting what came in,
and the two ways a stream stops being usable.

The server uses the stream from exactly two tasks at once: a reader that calls
:meth:`~h2gate.tls.stream.TLSStream.receive_some` and a writer that calls
:meth:`~h2gate.tls.stream.TLSStream.send_all`. Both may make OpenSSL emit records: the writer its
data, the reader alerts, TLS 1.3 session tickets or a KeyUpdate response. The
order of records on the wire must be the order OpenSSL wrote them into the
BIO. So the BIO is only ever drained synchronously into one ``_outgoing`` list
(no await in between, so BIO order is list order), and only the holder of
``_send_lock`` takes bytes off that list and sends them, looping until it is
empty. The writer always waits for the lock, so ``send_all`` returns only once
its bytes are handed to the transport (backpressure). The reader never waits
for it: if the lock is held, the holder will send the reader's records too, so
a writer stalled by a peer that is not reading cannot stall the reader.

A failed transport send leaves a record half-sent, and an OpenSSL error leaves
the session unusable: both move the stream to BROKEN for good. Cancelling a
receive is always safe (nothing is consumed until the transport returns).
The state moves only through :meth:`TLSRecords._break` (OK -> BROKEN) and
:meth:`h2gate.tls.stream.TLSStream.aclose` (-> CLOSED).
"""

from __future__ import annotations

import contextlib
import enum
import math
from types import TracebackType
from typing import NoReturn

import trio
from OpenSSL import SSL

from h2gate.compiled import caused
from h2gate.errors import SendTimeout
from h2gate.internals.openssl import direct_drain, direct_read
from h2gate.net.socket_send import raw_sender, within
from h2gate.tls.context import TLSInfo, client_cert_failure

__all__ = ["CLOSE_NOTIFY_TIMEOUT", "State", "TLSRecords"]

# Ciphertext read from the transport per call.
_TRANSPORT_RECEIVE = 256 * 1024
# Reading the BIO outside send_all: handshake flights, alerts, tickets.
_SMALL_DRAIN = 16 * 1024
# SSL_read returns at most one record (16 KiB plaintext); ask for a bit more.
_RECORD_READ = 32 * 1024
# How long aclose() may wait to get close_notify onto the wire.
CLOSE_NOTIFY_TIMEOUT = 1.0


class State(enum.Enum):
    OK = "ok"
    BROKEN = "broken"
    CLOSED = "closed"


class _OneAtATime:
    """Raise BusyResourceError when a method is entered by a second task."""

    __slots__ = ("_busy", "_message")

    def __init__(self, message: str) -> None:
        self._busy = False
        self._message = message

    def __enter__(self) -> None:
        if self._busy:
            raise trio.BusyResourceError(self._message)
        self._busy = True

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._busy = False


class TLSRecords:
    """The state of one TLS session and the steps that move its records (see the module docstring)."""

    # Slots: thousands of these sit idle at once, and a __dict__ is a few hundred bytes each.
    __slots__ = (
        "_conn", "_direct", "_eof", "_grown", "_handshake_lock", "_handshook", "_info", "_outgoing", "_polled",
        "_reader", "_receive_guard", "_send_guard", "_send_lock", "_state", "_transport_send", "peer_cert_error",
        "transport_stream",
    )  # fmt: skip

    def __init__(self, transport_stream: trio.abc.Stream, context: SSL.Context) -> None:
        self.transport_stream = transport_stream
        raw = raw_sender(transport_stream)
        self._transport_send = within(transport_stream.send_all) if raw is None else raw.send_all
        self._conn = SSL.Connection(context, None)
        self._conn.set_accept_state()
        self._direct = direct_drain(self._conn, raw)  # None: bio_read and _outgoing only
        self._reader = direct_read(self._conn, transport_stream)  # None: transport receive_some, recv, bio_write
        self._state = State.OK
        self._handshook = False
        self._eof = False  # close_notify or transport EOF seen
        self._polled = False  # transport_readable handed out a wait: the next receive_some's checkpoint
        self._grown = True  # a BIO held more than tls.stream._BIO_KEEP at once (the handshake's flights count)
        self._info: TLSInfo | None = None
        #: Why the client's certificate ended the handshake (mTLS), once it has.
        self.peer_cert_error: str | None = None
        self._outgoing: list[bytes] = []
        self._send_lock = trio.Lock()
        self._handshake_lock: trio.Lock | None = trio.Lock()  # dropped once the handshake is done
        self._receive_guard = _OneAtATime("another task is already receiving on this TLSStream")
        self._send_guard = _OneAtATime("another task is already sending on this TLSStream")

    def _break(self) -> None:
        """OK -> BROKEN; a closed stream stays closed."""
        if self._state is State.OK:
            self._state = State.BROKEN

    def _check_usable(self) -> None:
        if self._state is State.CLOSED:
            raise trio.ClosedResourceError("this TLSStream was closed")
        if self._state is State.BROKEN:
            raise trio.BrokenResourceError("this TLSStream is broken")

    def _decrypt(self, max_bytes: int) -> bytes:
        """Decrypt every complete record already in the BIO, up to ``max_bytes``.

        Sets ``_eof`` on close_notify (data before it is returned first); any
        other OpenSSL error is raised as is.
        """
        conn = self._conn
        pieces: list[bytes] = []
        remaining = max_bytes
        while remaining:
            try:
                piece = conn.recv(min(remaining, _RECORD_READ))
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:
                self._eof = True
                break
            pieces.append(piece)
            remaining -= len(piece)
        self._drain()
        if len(pieces) == 1:
            return pieces[0]
        return b"".join(pieces)

    def _drain(self, size: int = _SMALL_DRAIN) -> None:
        """Move everything OpenSSL has written to its BIO onto ``_outgoing``.

        ``size`` is the read buffer, ideally all that is waiting so one read
        empties the BIO: sized to the ciphertext after SSL_write, small
        elsewhere, where at most a few control records are waiting.
        """
        conn = self._conn
        while True:
            try:
                data = conn.bio_read(size)
            except SSL.WantReadError:
                return
            self._outgoing.append(data)
            if len(data) < size:
                return

    async def _flush(self, *, wait: bool) -> None:
        """Send ``_outgoing``; with ``wait`` False, leave it to a current holder."""
        self._drain()
        if not wait and self._send_lock.locked():
            return  # the holder loops until _outgoing is empty
        await self._send_queued()

    async def _send_queued(self, deadline: float = math.inf) -> None:
        """Take ``_send_lock`` and send ``_outgoing`` in order until it is empty (SendTimeout past ``deadline``)."""
        lock = self._send_lock
        try:
            lock.acquire_nowait()  # the usual case; skips a trip to the scheduler
        except trio.WouldBlock:
            with trio.move_on_at(deadline) as waited:
                await lock.acquire()
            if waited.cancelled_caught:
                raise caused(SendTimeout("the TLS records queued ahead were not sent before the send deadline"), None)
        try:
            outgoing = self._outgoing
            while outgoing:
                data = outgoing[0] if len(outgoing) == 1 else b"".join(outgoing)
                outgoing.clear()
                try:
                    await self._transport_send(data, deadline)
                except SendTimeout:
                    self._break()  # part of a record may be out
                    raise
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    self._raise_transport_error(exc)
                except BaseException:
                    # Cancelled part-way: the peer may have half a record.
                    self._break()
                    raise
        finally:
            lock.release()

    async def _transport_receive(self) -> bytes | bytearray:
        try:
            return await self.transport_stream.receive_some(_TRANSPORT_RECEIVE)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._raise_transport_error(exc)

    def _raise_transport_error(self, exc: BaseException) -> NoReturn:
        """Map a transport failure: Closed if we closed it, else Broken."""
        if self._state is State.CLOSED:
            raise caused(trio.ClosedResourceError("this TLSStream was closed"), exc)
        self._break()
        raise caused(trio.BrokenResourceError(f"transport failed: {exc!r}"), exc)

    async def _fail(self, exc: SSL.Error) -> NoReturn:
        """Break the stream on an OpenSSL error, trying briefly to send its alert."""
        if self._state is State.CLOSED:
            raise caused(trio.ClosedResourceError("this TLSStream was closed"), exc)
        self._break()
        if not self._handshook:
            self.peer_cert_error = client_cert_failure(self._conn, exc)
        self._drain()
        if self._outgoing and not self._send_lock.locked():
            with (
                trio.move_on_after(CLOSE_NOTIFY_TIMEOUT),
                contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError),
            ):
                await self._send_queued()
        raise caused(trio.BrokenResourceError(f"TLS error: {exc}"), exc)
