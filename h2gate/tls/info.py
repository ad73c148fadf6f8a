"""What a finished TLS handshake agreed, and how apps see it (ASGI ``tls`` extension, WSGI ``SSL_*`` keys)."""

from __future__ import annotations

import functools
import ssl
from typing import Any

from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL

from h2gate.net.transport import TLSInfo

__all__ = ["TLSInfo", "asgi_tls_extension", "tls_info", "wsgi_tls_environ"]


def tls_info(conn: SSL.Connection) -> TLSInfo:
    """Snapshot the negotiated parameters of a connection whose handshake is done."""
    pem = serialization.Encoding.PEM
    alpn = conn.get_alpn_proto_negotiated()
    server_name = conn.get_servername()
    peer = conn.get_peer_certificate(as_cryptography=True)
    own = conn.get_certificate(as_cryptography=True)
    chain: list[bytes] = []
    if peer is not None:
        chain.append(peer.public_bytes(pem))
        # On the server side OpenSSL leaves the client's own certificate out of this list.
        for cert in conn.get_peer_cert_chain(as_cryptography=True) or []:
            der = cert.public_bytes(pem)
            if der not in chain:
                chain.append(der)
    cipher = conn.get_cipher_name() or ""
    return _interned(
        TLSInfo(
            tls_version=conn.get_protocol_version_name(),
            cipher=cipher,
            alpn=alpn.decode("ascii", "replace") if alpn else None,
            server_name=server_name.decode("ascii", "replace") if server_name else None,
            peer_cert_pem=chain[0] if chain else None,
            tls_version_code=conn.get_protocol_version(),
            cipher_suite=_cipher_codes().get(cipher),
            server_cert_pem=_shared(own.public_bytes(pem)) if own is not None else None,
            peer_chain_pem=tuple(chain),
            peer_subject=peer.subject.rfc4514_string() if peer is not None else None,
        )
    )


_INTERNED: dict[TLSInfo, TLSInfo] = {}


def _interned(info: TLSInfo) -> TLSInfo:
    """One ``TLSInfo`` for all the handshakes that agreed the same things without a client certificate.

    It is frozen, and without a client certificate every connection with the
    same SNI, ALPN, version, cipher and server certificate agrees the same
    values: sharing one keeps an idle connection smaller, and lets the ASGI
    ``tls`` extension made from it (asgi/http.py) be made once for all of them.
    """
    if info.peer_chain_pem:
        return info
    kept = _INTERNED.get(info)
    if kept is None:
        if len(_INTERNED) >= 64:  # many SNI names or reloaded certificates: forget the old ones
            _INTERNED.clear()
        kept = _INTERNED[info] = info
    return kept


_SHARED: dict[bytes, bytes] = {}


def _shared(pem: bytes) -> bytes:
    """One bytes object per server certificate for all connections, not a copy each (about 1 KiB apiece)."""
    kept = _SHARED.get(pem)
    if kept is None:
        if len(_SHARED) >= 64:  # certificates reloaded many times: forget the old ones
            _SHARED.clear()
        kept = _SHARED[pem] = pem
    return kept


_TEXT: dict[bytes, str] = {}


def _text(pem: bytes) -> str:
    """The server certificate as text, decoded once (it goes into every ASGI request's scope)."""
    text = _TEXT.get(pem)
    if text is None:
        if len(_TEXT) >= 64:
            _TEXT.clear()
        text = _TEXT[pem] = pem.decode("ascii")
    return text


@functools.cache
def _cipher_codes() -> dict[str, int]:
    """OpenSSL cipher name -> IANA code (pyOpenSSL has no SSL_CIPHER_get_protocol_id)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.set_ciphers("ALL:COMPLEMENTOFALL:@SECLEVEL=0")
    except ssl.SSLError:
        pass
    return {c["name"]: c["id"] & 0xFFFF for c in context.get_ciphers()}


def asgi_tls_extension(info: TLSInfo) -> dict[str, Any]:
    """``scope["extensions"]["tls"]`` as the ASGI TLS extension specifies it (a new dict and list per request)."""
    chain = info.peer_chain_pem
    return {
        "server_cert": _text(info.server_cert_pem) if info.server_cert_pem else None,
        "client_cert_chain": [pem.decode("ascii") for pem in chain] if chain else [],
        "client_cert_name": info.peer_subject,
        # Verification failures end the handshake, so a request never sees one.
        "client_cert_error": None,
        "tls_version": info.tls_version_code or None,
        "cipher_suite": info.cipher_suite,
    }


def wsgi_tls_environ(info: TLSInfo) -> dict[str, str]:
    """The mod_ssl-style ``SSL_*`` (and ``HTTPS``) environ keys a WSGI app may look for."""
    environ = {
        "HTTPS": "on",
        "SSL_PROTOCOL": info.tls_version,
        "SSL_CIPHER": info.cipher,
        "SSL_CLIENT_VERIFY": "SUCCESS" if info.peer_cert_pem else "NONE",
    }
    if info.server_name:
        environ["SSL_TLS_SNI"] = info.server_name
    if info.server_cert_pem:
        environ["SSL_SERVER_CERT"] = info.server_cert_pem.decode("ascii")
    if info.peer_cert_pem:
        environ["SSL_CLIENT_CERT"] = info.peer_cert_pem.decode("ascii")
        for i, pem in enumerate(info.peer_chain_pem[1:]):
            environ[f"SSL_CLIENT_CERT_CHAIN_{i}"] = pem.decode("ascii")
    if info.peer_subject is not None:
        environ["SSL_CLIENT_S_DN"] = info.peer_subject
    return environ
