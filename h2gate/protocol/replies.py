"""Response pieces shared by the ASGI and WSGI adapters: header checks and the server's own replies."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any, Final

from h2gate.compiled import caused, mypyc_attr
from h2gate.errors import ClientDisconnected, ErrorCode
from h2gate.http.head import Headers
from h2gate.http.validate import has_bad_value_byte
from h2gate.observe.logs import http_date
from h2gate.protocol.stream import Stream

log = logging.getLogger("h2gate.error")

#: HTTP/1-only fields that are illegal in HTTP/2 responses (RFC 9113 §8.2.2).
HOP_BY_HOP: Final = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade", b"te"}
)
#: A whole name of RFC 9110 token characters (lowercase only: HTTP/2 field names must be lowercase, RFC 9113 §8.2.1).
_NAME_OK: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+").fullmatch
_warned: set[bytes] = set()  # (not Final: tests give it a fresh set)


@mypyc_attr(native_class=False)  # (a subclass of an uncompiled class: h2gate/compiled.py)
class HeaderError(ValueError):
    """A response header the app gave cannot go on the wire; the text names it."""


def _dropped(name: bytes) -> None:
    """One WARNING per header name per process, then DEBUG: apps (sse-starlette's ``Connection: keep-alive``)
    set these on every response, and a line per response would drown the log."""
    if name in _warned:
        log.debug("dropping response header %r (HTTP/1 only)", name.decode("latin-1"))
        return
    _warned.add(name)
    log.warning(
        "dropping response header %r: it has no meaning in HTTP/2 (said once; later ones are logged at debug level)",
        name.decode("latin-1"),
    )


#: Names an app gave that were found valid, to their lowercase form (bounded): most responses repeat a few names.
_GOOD_NAMES: Final[dict[bytes, bytes]] = {}
_GOOD_NAMES_MAX: Final = 1024


def prepare_headers(pairs: Iterable[Any], server_header: bool, *, trailer: bool = False) -> tuple[Headers, int | None]:
    """Check and normalise the app's response headers, in one pass.

    Returns the header block (with a placeholder ``:status`` first, ``server``
    and ``date`` added) and the declared content-length, if any. Raises
    HeaderError naming the offending field (an item that is not a pair of byte
    strings included). ``trailer``: a trailer block, which gets the same checks
    but no ``:status``, ``server`` or ``date``.

    ``pairs`` is whatever the app gave, typed ``Any`` on purpose: compiled by
    mypyc, a ``tuple[bytes, bytes]`` item type became a check on each item that
    raised a bare TypeError (a traceback) before the checks here could name the
    mistake.
    """
    out: Headers = [] if trailer else [(b":status", b"")]
    has_server = False
    content_length: int | None = None
    good = _GOOD_NAMES
    names: list[bytes] = []
    values: list[bytes] = []
    for item in pairs:
        try:
            name, value = item
        except (TypeError, ValueError):
            raise caused(HeaderError(f"response header {item!r} is not a [name, value] pair"), None)
        if not isinstance(name, bytes) or not isinstance(value, bytes):
            raise HeaderError(f"response header {item!r} must be a pair of byte strings")
        lower = good.get(name)
        if lower is None:
            lower = name.lower()
            # Checked here because h2 would only notice halfway through HPACK-encoding
            # the block (leaving the stream and encoder unusable), or not at all and
            # the client would reject the whole connection (RFC 9113 §8.2.1).
            if _NAME_OK(lower) is None:
                raise HeaderError(f"response header name {lower!r} is not a valid field name")
            if len(good) < _GOOD_NAMES_MAX:
                good[name] = lower
        name = lower
        names.append(name)
        values.append(value)  # CR, LF and NUL are looked for in all of them at once, below
        value = value.strip(b" \t")
        if name in HOP_BY_HOP:
            _dropped(name)
            continue
        if name == b"content-length":
            if not value.isdigit():
                raise HeaderError(f"content-length {value!r} is not a number")
            content_length = int(value)
        elif name == b"server":
            has_server = True
        out.append((name, value))
    if values and has_bad_value_byte(b"".join(values)):
        name, value = next((n, v) for n, v in zip(names, values, strict=True) if has_bad_value_byte(v))
        raise HeaderError(f"response header value {value!r} for {name!r} contains CR, LF or NUL")
    if trailer:
        return out, content_length
    if server_header and not has_server:
        out.append((b"server", b"h2gate"))
    out.append((b"date", http_date()))
    return out, content_length


async def simple_response(exchange: Stream, status: int, body: bytes, server_header: bool) -> None:
    """A complete plain-text response from the server itself (500, 501)."""
    headers: Headers = [
        (b":status", str(status).encode()),
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
    ]
    if server_header:
        headers.append((b"server", b"h2gate"))
    headers.append((b"date", http_date()))
    try:
        await exchange.send_headers(headers)
        await exchange.send_data(body, end_stream=True)
    except ClientDisconnected:
        pass


async def fail(exchange: Stream, server_header: bool) -> None:
    """The app failed: a 500 if nothing was sent yet, else RST_STREAM INTERNAL_ERROR."""
    if exchange.headers_sent or exchange.disconnected:
        exchange.reset(ErrorCode.INTERNAL_ERROR)
    else:
        await simple_response(exchange, 500, b"Internal Server Error\n", server_header)
