"""pyOpenSSL's internals, used in two places: moving TLS records without a copy, and OpenSSL's own error text.

Ciphertext from the socket straight into OpenSSL, and plaintext out, through the same scratch buffer
(:class:`DirectRead`):

Through the public API every read costs a ``bytes`` of the socket's
ciphertext (trio allocates the whole 256 KiB asked for, then shrinks it), a
copy of it into the input BIO, a fresh 32 KiB buffer per ``Connection.recv``
and a ``bytes`` copied out of it, and three exceptions: the socket's
EAGAIN before trio waits, the ``WantReadError`` that ends the loop over
records, and the one from ``bio_read`` asking whether OpenSSL wrote
anything back. :class:`DirectRead` reads the socket with ``readv`` into the
thread's scratch buffer, hands it to ``BIO_write``, decrypts every complete
record with ``SSL_read`` into the same buffer and copies out one ``bytes`` of
exactly the plaintext; ``SSL_get_error`` says why the loop ended and the
output BIO's length (``BIO_get_mem_data``) whether there is a record to send,
without raising. Any other OpenSSL error goes through pyOpenSSL's own
``_raise_ssl_error``, so the exception is the one ``Connection.recv`` raises.
In-process, a 400-byte record costs 6 us this way against 15 (bench/README.md,
"Round three: the byte path").

Ciphertext from OpenSSL's memory BIO straight to the socket, through one scratch buffer per thread:

pyOpenSSL's ``Connection.bio_read`` allocates a fresh buffer on every call and
then copies it into a new ``bytes``. After a 256 KiB ``SSL_write`` that is a
large allocation (fresh pages from the kernel, so page faults) and a second
copy of every byte sent: about a tenth of the server's CPU on a download.
:class:`DirectDrain` reads the BIO into a buffer that every connection of the
thread reuses and offers it to the socket at once; only what the kernel does
not take is copied out, to wait its turn in the stream's queue. Nothing awaits
in between, so no other connection can touch the buffer meanwhile.

This relies on pyOpenSSL internals (``OpenSSL._util`` and the connection's
``_from_ssl`` BIO). When they are missing, :func:`direct_drain` returns None
and :class:`h2gate.tls.stream.TLSStream` keeps to the public API.

Fresh memory BIOs for an idle connection (:func:`renew_bios`): an OpenSSL
memory BIO keeps the largest buffer it ever held (``BUF_MEM`` grows and never
shrinks), so a connection that once sent a 256 KiB chunk or read 256 KiB from
its socket keeps that much per BIO for the rest of its life, idle or not
(bench/README.md, "Idle connection memory"). Once such a connection is idle,
both BIOs are replaced by new empty ones (``SSL_set_bio``, which frees the
old pair); any bytes of a record not yet complete move into the new input
BIO first. This needs pyOpenSSL's ``_ssl``, ``_into_ssl`` and ``_from_ssl``;
without them :func:`renew_bios` does nothing and returns False.
"""

from __future__ import annotations

import errno
import os
import threading
from typing import Any

import trio
from OpenSSL import SSL

from h2gate.internals.probes import OPENSSL_BIO_PAIR, OPENSSL_RAISE, PROBES
from h2gate.net.socket_send import RawSender

try:
    from OpenSSL._util import ffi as _ffi
    from OpenSSL._util import lib as _lib
except ImportError:  # pragma: no cover - a pyOpenSSL without these internals
    _ffi = _lib = None

__all__ = ["SCRATCH", "DirectDrain", "DirectRead", "direct_drain", "direct_read", "renew_bios", "verify_error_text"]

#: Scratch size: the ciphertext of one 256 KiB SSL_write (TLSStream's chunk) with room to spare.
SCRATCH = 320 * 1024

_local = threading.local()


def _scratch() -> tuple[bytearray, Any]:
    """This thread's scratch buffer and the C pointer into it (made once, then reused)."""
    pair = getattr(_local, "pair", None)
    if pair is None:
        buffer = bytearray(SCRATCH)
        pair = _local.pair = (buffer, _ffi.from_buffer(buffer, require_writable=True))
    return pair


class DirectDrain:
    """One TLS connection's path from its outgoing BIO to its socket."""

    __slots__ = ("_bio", "_sender")

    def __init__(self, bio: Any, sender: RawSender) -> None:
        self._bio = bio
        self._sender = sender

    def rebind(self, conn: SSL.Connection) -> None:
        """Follow the connection's output BIO after :func:`renew_bios` replaced it."""
        self._bio = conn._from_ssl

    def send_now(self) -> tuple[bytes | None, bool]:
        """Read the BIO into the scratch buffer and send what the kernel takes now.

        Returns the bytes it did not take (a copy, or None) and whether the BIO
        is now empty; if not, the caller reads the rest the usual way, after
        the returned bytes. Raises trio's Broken/ClosedResourceError as the
        socket does.
        """
        buffer, pointer = _scratch()
        count = _lib.BIO_read(self._bio, pointer, SCRATCH)
        if count <= 0:
            return None, True
        with memoryview(buffer) as whole, whole[:count] as view:
            sent = self._sender.send_now(view)
            rest = bytes(view[sent:]) if sent < count else None
        return rest, count < SCRATCH


def direct_drain(conn: SSL.Connection, sender: RawSender | None) -> DirectDrain | None:
    """A :class:`DirectDrain` for ``conn`` over ``sender``; None without a raw socket or pyOpenSSL's internals."""
    bio = getattr(conn, "_from_ssl", None)
    if sender is None or bio is None or _lib is None or not hasattr(_lib, "BIO_read"):
        return None
    return DirectDrain(bio, sender)


#: SSL_get_error's answers that end a read without an error (ssl.h).
_SSL_ERROR_WANT_READ, _SSL_ERROR_ZERO_RETURN = 2, 6


class DirectRead:
    """One TLS connection's path from its socket through OpenSSL to plaintext (see the module docstring)."""

    __slots__ = ("_conn", "_fd", "_socket")

    def __init__(self, conn: SSL.Connection, trio_socket: trio.socket.SocketType) -> None:
        self._conn = conn
        self._socket = trio_socket
        self._fd = trio_socket.fileno()  # trio sockets are non-blocking

    async def wait_readable(self) -> None:
        """Wait until the socket has something to read (or was closed: ClosedResourceError)."""
        await trio.lowlevel.wait_readable(self._socket)

    def fill(self) -> int:
        """Read what the socket holds now into the input BIO: the count, 0 at the end of the stream, -1 if none yet.

        Raises trio's ClosedResourceError once the socket was closed by us, BrokenResourceError for
        anything the transport reports.
        """
        if self._socket.fileno() == -1:  # closed by us: the fd may already belong to someone else
            raise trio.ClosedResourceError("socket was already closed")
        buffer, pointer = _scratch()
        try:
            count = os.readv(self._fd, (buffer,))
        except BlockingIOError:
            return -1
        except OSError as exc:
            if exc.errno == errno.EBADF:
                raise trio.ClosedResourceError("socket was closed") from exc
            raise trio.BrokenResourceError(f"socket receive failed: {exc!r}") from exc
        if count:
            _lib.BIO_write(self._conn._into_ssl, pointer, count)  # a memory BIO takes it all
        return count

    def decrypt(self, max_bytes: int) -> tuple[bytes, bool]:
        """Decrypt every complete record in the input BIO, up to ``max_bytes``: (plaintext, close_notify seen).

        Raises what ``Connection.recv`` raises for any other OpenSSL error.
        """
        conn = self._conn
        ssl = conn._ssl
        buffer, pointer = _scratch()
        limit = min(max_bytes, SCRATCH)
        total = 0
        while total < limit:
            count = _lib.SSL_read(ssl, pointer + total, limit - total)
            if count <= 0:
                error = _lib.SSL_get_error(ssl, count)
                if error == _SSL_ERROR_WANT_READ:
                    break
                if error == _SSL_ERROR_ZERO_RETURN:
                    return _copy(buffer, total), True
                conn._raise_ssl_error(ssl, count)  # raises pyOpenSSL's exception for it
            total += count
        return _copy(buffer, total), False

    def output_pending(self) -> bool:
        """Whether OpenSSL wrote records (an alert, a ticket, a KeyUpdate reply) into its output BIO."""
        return bool(_lib.BIO_get_mem_data(self._conn._from_ssl, _ffi.NULL) > 0)


def _copy(buffer: bytearray, count: int) -> bytes:
    if not count:
        return b""
    with memoryview(buffer) as whole, whole[:count] as view:
        return bytes(view)


def direct_read(conn: SSL.Connection, transport: trio.abc.Stream) -> DirectRead | None:
    """A :class:`DirectRead` for ``conn`` over a trio SocketStream; None for other streams or without the internals."""
    if not _READABLE or not isinstance(transport, trio.SocketStream):
        return None
    return DirectRead(conn, transport.socket)


_BIO_NAMES = ("BIO_new", "BIO_free", "BIO_s_mem", "BIO_read", "BIO_write", "SSL_set_bio")


_RENEWABLE = PROBES[OPENSSL_BIO_PAIR] and _lib is not None and all(hasattr(_lib, name) for name in _BIO_NAMES)
_READ_NAMES = ("BIO_write", "BIO_get_mem_data", "SSL_read", "SSL_get_error")
_READABLE = (
    PROBES[OPENSSL_BIO_PAIR]
    and PROBES[OPENSSL_RAISE]
    and _lib is not None
    and all(hasattr(_lib, name) for name in _READ_NAMES)
)


def renew_bios(conn: SSL.Connection) -> bool:
    """Give ``conn`` a new, empty pair of memory BIOs (see the module docstring); False if it cannot.

    The caller makes sure nothing waits in the output BIO (it drained it) and
    that no OpenSSL call is in progress; unread input is carried over.
    """
    if not _RENEWABLE:
        return False
    ssl, old_in = getattr(conn, "_ssl", None), getattr(conn, "_into_ssl", None)
    if ssl is None or old_in is None or getattr(conn, "_from_ssl", None) is None:
        return False
    new_in, new_out = _lib.BIO_new(_lib.BIO_s_mem()), _lib.BIO_new(_lib.BIO_s_mem())
    if new_in == _ffi.NULL or new_out == _ffi.NULL:
        for bio in (new_in, new_out):
            if bio != _ffi.NULL:
                _lib.BIO_free(bio)
        return False
    _, pointer = _scratch()
    while (count := _lib.BIO_read(old_in, pointer, SCRATCH)) > 0:  # part of a record: keep it
        _lib.BIO_write(new_in, pointer, count)
    _lib.SSL_set_bio(ssl, new_in, new_out)  # takes both, frees the old pair
    conn._into_ssl, conn._from_ssl = new_in, new_out
    return True


def verify_error_text(errno: int) -> str:
    """OpenSSL's words for a certificate verification error (``X509_verify_cert_error_string``)."""
    if _lib is None or not hasattr(_lib, "X509_verify_cert_error_string"):
        return f"verify error {errno}"
    return str(_ffi.string(_lib.X509_verify_cert_error_string(errno)).decode())
