"""The ASGI ``websocket`` scope and handshake details shared by both WebSocket transports."""

from __future__ import annotations

from typing import Any

from wsproto.extensions import PerMessageDeflate
from wsproto.handshake import server_extensions_handshake

from h2gate.asgi.http import build_scope
from h2gate.asgi.types import Scope
from h2gate.http.head import Headers, RequestHead
from h2gate.net.transport import Transport
from h2gate.protocol.stream import Stream


def connect_protocol(exchange: Stream) -> bytes | None:
    """The ``:protocol`` of an RFC 8441 extended CONNECT (lowercased), or None for any other request."""
    head = exchange.head
    return head.protocol.lower() if head.method == b"CONNECT" and head.protocol is not None else None


def websocket_scope(
    head: RequestHead, transport: Transport, root_path: str, state: dict[str, Any], http_version: str
) -> Scope | None:
    scope = build_scope(head, transport, root_path, state)
    if scope is None:
        return None
    del scope["method"]
    scope["type"] = "websocket"
    scope["http_version"] = http_version
    scope["scheme"] = "wss" if scope["scheme"] in ("https", "wss") else "ws"
    protocols = [v for n, v in scope["headers"] if n == b"sec-websocket-protocol"]
    scope["subprotocols"] = split_values(protocols)
    scope["extensions"] = {**scope["extensions"], "websocket.http.response": {}}
    return scope


def split_values(values: list[bytes]) -> list[str]:
    """The items of comma-separated header values (all occurrences), stripped, empty ones dropped."""
    return [item.strip() for value in values for item in value.decode("latin-1").split(",") if item.strip()]


def deflate_for(headers: Headers) -> tuple[PerMessageDeflate | None, bytes | None]:
    """permessage-deflate when the client offered it: the extension and the response header value."""
    offers = [v for n, v in headers if n == b"sec-websocket-extensions"]
    if not offers:
        return None, None
    deflate = PerMessageDeflate()
    try:
        accepted = server_extensions_handshake(split_values(offers), [deflate])
    except (ValueError, TypeError):
        return None, None
    return (deflate, accepted) if accepted else (None, None)
