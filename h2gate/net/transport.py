"""The two transports a connection can arrive on: TLS and cleartext.

Each is an explicit class with the same attributes, so the protocol layer never
probes a stream to learn what it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from h2gate.tls.context import TLSInfo

Address = tuple[str, int] | tuple[str, None] | None


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
