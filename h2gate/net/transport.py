"""The two transports a connection can arrive on: TLS and cleartext.

Each is an explicit class with the same attributes, so the protocol layer never
probes a stream to learn what it is. :class:`TLSInfo` lives here rather than in
h2gate.tls (which fills it in and re-exports it) because the transports name it
in their fields: a compiled build (mypyc) needs the class at run time, and this
layer sits below h2gate.tls.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio

Address = tuple[str, int] | tuple[str, None] | None


@dataclass(frozen=True, slots=True)
class TLSInfo:
    """What one handshake negotiated; filled in once (h2gate.tls.info.tls_info), read by the protocol layer."""

    tls_version: str
    cipher: str
    alpn: str | None
    server_name: str | None
    peer_cert_pem: bytes | None
    tls_version_code: int = 0  # e.g. 0x0304 for TLS 1.3
    cipher_suite: int | None = None  # IANA code, e.g. 0x1301
    server_cert_pem: bytes | None = None
    #: The client's certificate first, then the chain it sent (empty without a client certificate).
    peer_chain_pem: tuple[bytes, ...] = ()
    peer_subject: str | None = None  # RFC 4514


@dataclass(slots=True)
class CleartextTransport:
    """h2c: HTTP/2 straight over TCP or a unix socket (prior knowledge)."""

    stream: trio.abc.Stream
    peer: Address
    local: Address
    scheme: str = "http"
    alpn: str | None = None
    tls: TLSInfo | None = None


@dataclass(slots=True)
class TLSTransport:
    """HTTP/2 over TLS; ``alpn`` is what the handshake selected."""

    stream: trio.abc.Stream
    peer: Address
    local: Address
    tls: TLSInfo
    scheme: str = "https"

    @property
    def alpn(self) -> str | None:
        return self.tls.alpn


Transport = CleartextTransport | TLSTransport
