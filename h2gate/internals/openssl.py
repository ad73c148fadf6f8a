"""pyOpenSSL's internals, used in two places: moving TLS records without a copy, and OpenSSL's own error text.

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

import threading
from typing import Any

from OpenSSL import SSL

from h2gate.internals.probes import OPENSSL_BIO_PAIR, PROBES
from h2gate.net.socket_send import RawSender

try:
    from OpenSSL._util import ffi as _ffi
    from OpenSSL._util import lib as _lib
except ImportError:  # pragma: no cover - a pyOpenSSL without these internals
    _ffi = _lib = None

__all__ = ["SCRATCH", "DirectDrain", "direct_drain", "renew_bios", "verify_error_text"]

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


_BIO_NAMES = ("BIO_new", "BIO_free", "BIO_s_mem", "BIO_read", "BIO_write", "SSL_set_bio")


_RENEWABLE = PROBES[OPENSSL_BIO_PAIR] and _lib is not None and all(hasattr(_lib, name) for name in _BIO_NAMES)


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
