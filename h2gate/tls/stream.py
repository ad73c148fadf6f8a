"""A server-side TLS stream: pyOpenSSL over memory BIOs, driven by trio.

Theory of operation
-------------------
OpenSSL never touches the socket. The :class:`OpenSSL.SSL.Connection` is made
with memory BIOs (``Connection(context, None)``): ciphertext we receive is
pushed in with ``bio_write``, ciphertext OpenSSL produces is pulled out with
``bio_read``, and every OpenSSL call is synchronous and non-blocking. When a
call needs more input it raises ``WantReadError``, and the coroutine awaits the
transport instead. This is the shape of ``trio.SSLStream``, cut down to what an
HTTP/2 server needs: server side only, no renegotiation (the context forbids
it), no half-close.

On a socket, after the handshake, the reader does not go through trio's
``SocketStream`` and pyOpenSSL's ``recv``: :class:`h2gate.internals.openssl.DirectRead`
reads the socket into OpenSSL's input BIO and decrypts every complete record
in one pass, with no exception and one ``bytes`` of plaintext per read (its
docstring has the figures); other transports, and a pyOpenSSL without those
internals, take the general loop.

With renegotiation off and the handshake done, ``SSL_write`` on a memory BIO
never needs to read, and ``SSL_read`` never needs the writer, so the two
directions are independent. The handshake runs under its own lock before
either direction starts.

The records themselves (their order on the wire, the send lock, the BROKEN
state) are :mod:`h2gate.tls.records`'s.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Awaitable

import trio
from OpenSSL import SSL

from h2gate.compiled import caused
from h2gate.internals.openssl import DirectRead, renew_bios
from h2gate.tls.context import TLSInfo, tls_info
from h2gate.tls.records import CLOSE_NOTIFY_TIMEOUT, State, TLSRecords

__all__ = ["TLSStream"]

# Plaintext handed to one SSL_write: big enough to amortise the per-call cost,
# small enough that the ciphertext copy in memory stays bounded.
_SEND_CHUNK = 256 * 1024
# Plaintext returned by receive_some(None).
_DEFAULT_RECEIVE = 256 * 1024
# A BIO that took more than this in one go keeps that much allocated: renewed once idle.
_BIO_KEEP = 8 * 1024


class TLSStream(TLSRecords, trio.abc.Stream):
    """Server side of a TLS connection over ``transport_stream``.

    Call :meth:`do_handshake` first (under a timeout of the caller's choosing);
    :meth:`send_all` and :meth:`receive_some` also start it if needed.
    """

    __slots__ = ()

    @property
    def info(self) -> TLSInfo:
        """What the handshake negotiated. Raises RuntimeError before it is done."""
        if self._info is None:
            raise RuntimeError("TLS handshake has not completed")
        return self._info

    @property
    def alpn(self) -> str | None:
        """The ALPN protocol agreed in the handshake (``"h2"``), or None."""
        return self.info.alpn

    async def do_handshake(self) -> None:
        """Run the TLS handshake; a no-op once it has succeeded.

        No timeout here: wrap the call in ``trio.fail_after``. Raises
        BrokenResourceError (from the cause) if the peer's hello is rejected or
        the transport fails or ends, ClosedResourceError after :meth:`aclose`.
        """
        lock = self._handshake_lock
        if lock is None:  # done already
            self._check_usable()
            await trio.lowlevel.checkpoint()
            return
        async with lock:
            self._check_usable()
            if self._handshook:
                await trio.lowlevel.checkpoint()
                return
            conn = self._conn
            while True:
                try:
                    conn.do_handshake()
                    break
                except SSL.WantReadError:
                    await self._flush(wait=True)
                    data = await self._transport_receive()
                    if not data:
                        self._break()
                        raise caused(
                            trio.BrokenResourceError("peer closed the connection during the TLS handshake"), None
                        )
                    conn.bio_write(data)
                except SSL.Error as exc:
                    await self._fail(exc)
            self._handshook = True
            self._info = tls_info(conn)
            # Our last flight (TLS 1.2 Finished, TLS 1.3 session tickets).
            await self._flush(wait=True)
        self._handshake_lock = None  # a waiter that got in meanwhile finds _handshook set

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Return up to ``max_bytes`` of plaintext, as much as is already decrypted.

        Returns b"" once the peer sent close_notify or the transport ended.
        Raises BrokenResourceError on TLS or transport failure,
        ClosedResourceError after :meth:`aclose`, BusyResourceError if another
        task is receiving. A checkpoint, as trio's streams are: the caller's
        wait on :meth:`transport_readable` just before counts as this call's.
        """
        with self._receive_guard:
            polled, self._polled = self._polled, False
            if max_bytes is None:
                max_bytes = _DEFAULT_RECEIVE
            else:
                max_bytes = operator.index(max_bytes)
                if max_bytes < 1:
                    raise ValueError("max_bytes must be >= 1")
            self._check_usable()
            if not self._handshook:
                await self.do_handshake()
            if self._reader is not None:
                return await self._receive_direct(self._reader, max_bytes, polled)
            waited = polled
            data = b""
            while not self._eof:
                try:
                    data = self._decrypt(max_bytes)
                except SSL.Error as exc:
                    await self._fail(exc)
                if self._outgoing:  # an alert, a ticket, a KeyUpdate reply
                    await self._flush(wait=False)
                    waited = True
                if data:
                    break
                if self._eof:
                    break
                received = await self._transport_receive()
                waited = True
                if not received:
                    # EOF without close_notify; HTTP/2 framing detects truncation.
                    self._eof = True
                    break
                self._conn.bio_write(received)
                if len(received) > _BIO_KEEP:
                    self._grown = True
            if not waited:
                await trio.lowlevel.checkpoint()
            return data

    async def _receive_direct(self, reader: DirectRead, max_bytes: int, waited: bool) -> bytes:
        """:meth:`receive_some` on a socket, through :class:`h2gate.internals.openssl.DirectRead`.

        The same steps as the general loop: decrypt what the BIO holds, send
        what OpenSSL wrote back, read the socket only when no plaintext came
        out; without an exception, a ``bytes`` of ciphertext or a buffer per
        call in between.
        """
        data = b""
        while not self._eof:
            try:
                data, self._eof = reader.decrypt(max_bytes)
            except SSL.Error as exc:
                await self._fail(exc)
            if reader.output_pending():  # an alert, a ticket, a KeyUpdate reply
                await self._flush(wait=False)
                waited = True
            if data or self._eof:
                break
            try:
                while (count := reader.fill()) < 0:
                    await reader.wait_readable()
                    waited = True
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self._raise_transport_error(exc)
            if not count:
                self._eof = True  # EOF without close_notify; HTTP/2 framing detects truncation
                break
            if count > _BIO_KEEP:
                self._grown = True
        if not waited:
            await trio.lowlevel.checkpoint()
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt ``data`` and return once all of it is handed to the transport.

        Raises BrokenResourceError on TLS or transport failure (the stream stays
        broken; so does a send cancelled mid-write), ClosedResourceError after
        :meth:`aclose`, BusyResourceError if another task is sending.
        """
        await self.send_all_by(data, math.inf)

    async def send_all_by(self, data: bytes | bytearray | memoryview, deadline: float) -> None:
        """:meth:`send_all`, raising SendTimeout (the stream broken) if it still has to wait at ``deadline``."""
        with self._send_guard:
            self._check_usable()
            await trio.lowlevel.checkpoint_if_cancelled()
            if not self._handshook:
                await self.do_handshake()
            view = memoryview(data).cast("B")
            if not view:
                await trio.lowlevel.checkpoint()
                return
            conn = self._conn
            if len(view) > _BIO_KEEP:
                self._grown = True
            for start in range(0, len(view), _SEND_CHUNK):
                self._check_usable()  # the reader or aclose may have ended it
                chunk = view[start : start + _SEND_CHUNK]
                try:
                    # A memory BIO never fills up, so SSL_write takes it all.
                    sent = conn.send(chunk)
                    while sent < len(chunk):
                        sent += conn.send(chunk[sent:])
                except SSL.Error as exc:
                    await self._fail(exc)
                emptied = False
                if self._direct is not None and not self._outgoing and not self._send_lock.locked():
                    # Nothing queued ahead of these records: straight to the socket (h2gate.internals.openssl).
                    try:
                        rest, emptied = self._direct.send_now()
                    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                        self._raise_transport_error(exc)
                    if rest is not None:
                        self._outgoing.append(rest)
                if not emptied:  # records add at most 29 bytes (TLS 1.2 GCM) per 16 KiB
                    self._drain(len(chunk) + 32 * (len(chunk) // 16384 + 1) + 512)
                if self._outgoing:
                    await self._send_queued(deadline)

    def release_buffers(self) -> None:
        """The connection is idle: give back the memory OpenSSL's BIOs kept from their busiest moment.

        A memory BIO never shrinks (h2gate.internals.openssl): after one large
        response or upload it would hold that much for as long as the
        connection lives. Replaced only when nothing is being sent (the output
        BIO is drained, no send in progress); unread input is carried over. A
        no-op unless a BIO grew past ``_BIO_KEEP`` since the last time.
        """
        if not self._grown or self._state is not State.OK or not self._handshook:
            return
        if self._send_guard._busy or self._send_lock.locked():
            return
        self._drain()
        if self._outgoing:
            return  # records of a reader's alert or ticket wait for the writer: next time
        conn = self._conn
        if renew_bios(conn):
            self._grown = False
            if self._direct is not None:
                self._direct.rebind(conn)

    def transport_readable(self) -> Awaitable[None] | None:
        """What an idle reader awaits until the socket has bytes; None if the transport is not a socket.

        Only for a caller whose last :meth:`receive_some` came back with fewer
        bytes than it asked for: everything OpenSSL could decrypt was returned
        then, so nothing is missed by waiting on the socket itself. The waiting
        task's stack is then trio's readiness wait alone, not this stream's,
        trio's stream's and its socket's frames too (about 2 KiB per idle
        connection: bench/README.md, "Idle connection memory"). That wait is
        a checkpoint, so the :meth:`receive_some` right after it skips its own
        (one trip through trio's scheduler per read fewer: bench/README.md,
        "Round four: the byte path").
        """
        sock = getattr(self.transport_stream, "socket", None)
        if sock is None or self._state is not State.OK or self._eof:
            return None
        self._polled = True
        return trio.lowlevel.wait_readable(sock)

    async def wait_send_all_might_not_block(self) -> None:
        """Wait until the transport can probably take more data."""
        with self._send_guard:
            self._check_usable()
            async with self._send_lock:
                try:
                    await self.transport_stream.wait_send_all_might_not_block()
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    self._raise_transport_error(exc)

    async def aclose(self) -> None:
        """Send close_notify if possible (waiting at most a second), then close.

        Never waits for the peer's close_notify. Idempotent; a cancelled aclose
        still closes the transport.
        """
        if self._state is State.CLOSED:
            await trio.lowlevel.checkpoint()
            return
        say_goodbye = self._state is State.OK and self._handshook
        self._state = State.CLOSED
        try:
            if say_goodbye:
                self._conn.shutdown()
                self._drain()
                with trio.move_on_after(CLOSE_NOTIFY_TIMEOUT):
                    await self._send_queued()
        except (SSL.Error, trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # best effort: the peer may already be gone
        finally:
            await self.transport_stream.aclose()
