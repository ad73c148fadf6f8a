"""HTTP/2 server push for ASGI apps: the ``http.response.push`` extension.

Push is a hint, so it is best effort: it is advertised in the scope only when
the client's SETTINGS_ENABLE_PUSH allows it, and a push the client cannot take
at the moment it is sent (it turned push off since, its stream limit is
reached, the associated stream already ended) is skipped with a debug line.
A promised request (always a GET, RFC 9113 §8.4) is then served like any
other: the same app answers it on the promised stream.
"""

from __future__ import annotations

import logging

from h2gate.asgi.types import Message
from h2gate.compiled import caused, mypyc_attr
from h2gate.http.head import Headers
from h2gate.protocol.stream import Stream

log = logging.getLogger("h2gate.error")


@mypyc_attr(native_class=False)  # (a subclass of an uncompiled class: h2gate/compiled.py)
class PushMistake(ValueError):
    """An ``http.response.push`` message that breaks the extension's rules."""


def push_enabled(exchange: Stream) -> bool:
    return exchange.push_allowed


def promised_request(exchange: Stream, message: Message) -> Headers:
    """The request headers of the promise: GET, the associated request's scheme and authority, the app's path."""
    path = message.get("path")
    if not isinstance(path, str) or not path.startswith("/"):
        raise PushMistake(f"http.response.push path must be a str starting with '/', got {path!r}")
    head = exchange.head
    headers: Headers = [
        (b":method", b"GET"),
        (b":scheme", head.scheme or exchange.default_scheme.encode()),
        (b":authority", head.authority),
        (b":path", path.encode("utf-8")),
    ]
    for item in message.get("headers", []):
        try:
            name, value = item
        except (TypeError, ValueError):
            raise caused(PushMistake(f"http.response.push header {item!r} is not a [name, value] pair"), None)
        if not isinstance(name, bytes) or not isinstance(value, bytes) or name[:1] == b":":
            raise PushMistake(f"http.response.push header {item!r} must be a pair of byte strings, no pseudo-header")
        headers.append((name.lower(), value))
    return headers


def push(exchange: Stream, message: Message) -> None:
    """Send PUSH_PROMISE on the exchange's stream and start serving the promised request."""
    request = promised_request(exchange, message)
    if not push_enabled(exchange):
        log.debug("stream %d: push of %s skipped: the client does not accept pushes", exchange.stream_id, request[3][1])
        return
    if not exchange.push(request):
        log.debug("stream %d: push of %r skipped: the client cannot take it now", exchange.stream_id, request[3][1])
