"""Deciding what a client speaks before the HTTP/2 connection starts.

Theory of operation
-------------------
HTTP/2 is reached three ways (RFC 9113 §3, RFC 7540 §3.2): ALPN "h2" over TLS
(handled in the handshake, never reaches this module), prior knowledge (the
client opens with the 24-byte preface) and, on cleartext only, an HTTP/1.1
request carrying ``Upgrade: h2c``. Anything else is HTTP/1.1 this server will
not serve, or garbage.

:func:`negotiate` reads the first bytes under the handshake timeout. While they
are a prefix of the preface it keeps reading; a full preface, or anything
starting with ``PRI`` (the method RFC 9113 reserves for it), goes to h2, which
answers a mangled preface with GOAWAY PROTOCOL_ERROR. Otherwise the bytes go to
``h11``: a request that asks for h2c with a valid ``HTTP2-Settings`` has its
(bounded) body read, gets ``101 Switching Protocols``, and is handed over as an
:class:`H2CUpgrade` that the connection runs as stream 1. A valid RFC 6455
WebSocket upgrade (when ``allow_websocket``: ``--ws-http1`` and an ASGI app)
is handed over as a :class:`WebSocketUpgrade` (the h11 connection, still
waiting for our answer) that :mod:`h2gate.asgi.websocket` serves: browsers
open a WebSocket over HTTP/1.1 when they have no HTTP/2 connection to the
origin yet. Other HTTP/1.1 requests get ``505`` with a hint (or a plain close
when ``http1_answer`` is off); bytes h11 cannot parse get a close and a debug
line.

Bytes read past what each step consumed are never lost: the stream handed on
is a :class:`ReplayStream` that returns them first. Every request shape is
routed through :func:`_route`, which also lets HTTP/1.1 WebSocket upgrades
through.
"""

from __future__ import annotations

import base64
import binascii
import enum
import logging
import re
from dataclasses import dataclass

import h11
import trio
from hyperframe.exceptions import HyperframeError
from hyperframe.frame import SettingsFrame

from h2gate.config import Config
from h2gate.http.head import Headers

log = logging.getLogger("h2gate.error")

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_READ = 64 * 1024
#: Bytes (and seconds) we read and discard after a refusal so the close does not reset the answer away.
_LINGER_BYTES = 256 * 1024
_LINGER_SECONDS = 1.0
#: Connection-specific fields that never become HTTP/2 fields (RFC 9113 §8.2.2).
_HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade", b"http2-settings", b"host"}
)


class ReplayStream(trio.abc.Stream):
    """A stream whose first reads return ``pending`` (bytes already read from ``stream``)."""

    def __init__(self, stream: trio.abc.Stream, pending: bytes) -> None:
        self.stream = stream
        self._pending = pending

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self._pending:
            await trio.lowlevel.checkpoint()
            size = len(self._pending) if max_bytes is None else max_bytes
            data, self._pending = self._pending[:size], self._pending[size:]
            return data
        return await self.stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.stream.aclose()


@dataclass(frozen=True, slots=True)
class H2CUpgrade:
    """An accepted ``Upgrade: h2c`` request, to be answered as stream 1."""

    settings: bytes  # HTTP2-Settings, base64url with padding restored
    headers: Headers  # the request in HTTP/2 form (pseudo-headers first)
    body: bytes


@dataclass(frozen=True, slots=True)
class WebSocketUpgrade:
    """An HTTP/1.1 WebSocket upgrade request (RFC 6455), read to its end and not yet answered."""

    conn: h11.Connection  # its client state is MIGHT_SWITCH_PROTOCOL
    request: h11.Request


@dataclass(frozen=True, slots=True)
class Handoff:
    """Speak HTTP/2 on ``stream``; ``upgrade`` is set when the client came via h2c Upgrade.

    With ``websocket`` set the stream is not HTTP/2 at all: serve that WebSocket on it.
    """

    stream: trio.abc.Stream
    upgrade: H2CUpgrade | None = None
    websocket: WebSocketUpgrade | None = None


class _Route(enum.Enum):
    H2C = "h2c"
    WEBSOCKET = "websocket"  # RFC 6455 upgrade, served to the ASGI app
    REFUSE = "refuse"  # plain HTTP/1.1 (or an upgrade we do not do): 505


async def negotiate(
    stream: trio.abc.Stream, config: Config, who: str, *, allow_upgrade: bool, allow_websocket: bool = False
) -> Handoff | None:
    """Find out whether the client speaks HTTP/2 on ``stream``.

    Returns the hand-off for the HTTP/2 connection, or None when the
    connection is finished (answered, refused or timed out; the caller closes
    it). ``allow_upgrade`` is False over TLS, where h2c must be ignored;
    ``allow_websocket`` lets HTTP/1.1 WebSocket upgrades through.
    Raises trio.BrokenResourceError / ClosedResourceError / OSError if the
    transport fails.
    """
    first: bytes | None = None
    with trio.move_on_after(config.handshake_timeout) as timeout:
        first = await _sniff(stream)
        if first is not None and not first.startswith(b"PRI"):
            return await _http1(stream, first, config, who, allow_upgrade, allow_websocket)
    if timeout.cancelled_caught:
        if first is None:
            log.info("no HTTP/2 preface from %s within %gs", who, config.handshake_timeout)
        else:
            log.info("HTTP/1.1 exchange with %s not finished within %gs", who, config.handshake_timeout)
        return None
    if not first:
        log.debug("connection from %s closed before it sent anything", who)
        return None
    return Handoff(ReplayStream(stream, first))


async def _sniff(stream: trio.abc.Stream) -> bytes | None:
    """Read until the bytes are a whole preface or stop being a prefix of one; None on early EOF."""
    data = b""
    while len(data) < len(PREFACE) and PREFACE.startswith(data[: len(PREFACE)]):
        chunk = await stream.receive_some(_READ)
        if not chunk:
            return None
        data += chunk
    return data


async def _http1(
    stream: trio.abc.Stream, first: bytes, config: Config, who: str, allow_upgrade: bool, allow_websocket: bool
) -> Handoff | None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=config.max_header_list_size)
    conn.receive_data(first)
    head = bytearray(first)  # the bytes of the request head, kept to choose the status of a refusal
    try:
        request = await _next(conn, stream, head, config.max_header_list_size)
        if not isinstance(request, h11.Request):
            log.debug("closing connection from %s: it sent neither the HTTP/2 preface nor HTTP/1.1", who)
            return None
        route, settings = _route(request, allow_upgrade, allow_websocket)
        if _framing_conflict(request):
            # RFC 9112 §6.3: both framings at once smells of request smuggling: an error, then close.
            log.info("HTTP/1.1 request from %s refused: both Transfer-Encoding and Content-Length (400)", who)
            if route is not _Route.REFUSE or config.http1_answer:
                await _answer(conn, stream, 400, _BAD_FRAMING)
            return None
        if route is _Route.WEBSOCKET:
            end = await _next(conn, stream)
            if isinstance(end, h11.EndOfMessage):
                return Handoff(stream, websocket=WebSocketUpgrade(conn, request))
            log.debug("connection from %s closed during a WebSocket upgrade request", who)
            return None
        if route is _Route.H2C:
            assert settings is not None
            return await _upgrade(conn, stream, request, settings, config, who)
        log.info(
            "HTTP/1.1 request from %s (%s %s) refused: this server speaks HTTP/2 only",
            who,
            request.method.decode("latin-1"),
            request.target.decode("latin-1")[:200],
        )
        if config.http1_answer:
            await _answer(conn, stream, 505, _HINT)
        return None
    except h11.RemoteProtocolError as exc:
        if _REQUEST_LINE.match(first) is None:
            log.debug("closing connection from %s: neither the HTTP/2 preface nor valid HTTP/1.1 (%s)", who, exc)
            return None
        status = _error_status(bytes(head), exc)
        log.info("malformed HTTP/1.1 request from %s: %s (%d)", who, exc, status)
        if config.http1_answer:
            await _answer(conn, stream, status, _MALFORMED)
        return None


#: The start of an HTTP/1.x request line: what tells a broken request from bytes that are not HTTP at all.
_REQUEST_LINE = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+ [^ \r\n]+ HTTP/1\.[0-9]\r?\n")


def _framing_conflict(request: h11.Request) -> bool:
    names = {name for name, _ in request.headers}
    return b"transfer-encoding" in names and b"content-length" in names


def _error_status(head: bytes, exc: h11.RemoteProtocolError) -> int:
    """The answer to a request h11 could not read: 431 for a head over the limit, else 400.

    Conflicting Content-Length fields and a Transfer-Encoding whose last coding
    is not chunked leave the body's length unknown: 400 and close (RFC 9112
    §6.3). h11 hints 501 for any coding but chunked; only a known framing with
    an unknown coding before chunked deserves that (RFC 9112 §6.1).
    """
    if exc.error_status_hint == 431:
        return 431
    if exc.error_status_hint == 501:
        codings = [
            t.strip().lower()
            for name, value in _raw_fields(head)
            if name == b"transfer-encoding"
            for t in value.split(b",")
        ]
        if codings and codings[-1] == b"chunked":
            return 501
    return 400


def _raw_fields(head: bytes) -> list[tuple[bytes, bytes]]:
    """The header fields of the request h11 rejected, parsed loosely (only to pick a status)."""
    out = []
    for line in head.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            out.append((name.strip().lower(), value.strip()))
    return out


async def _next(
    conn: h11.Connection, stream: trio.abc.Stream, keep: bytearray | None = None, limit: int = 0
) -> h11.Event | type[h11.PAUSED] | type[h11.NEED_DATA]:
    """The next h11 event, reading from ``stream`` as needed; raises h11.RemoteProtocolError.

    Bytes read are also appended to ``keep`` while it holds under ``limit`` plus one read.
    """
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        data = await stream.receive_some(_READ)
        if keep is not None and len(keep) <= limit:
            keep += data
        conn.receive_data(bytes(data))  # b"" means EOF: h11 turns it into ConnectionClosed or an error


def _tokens(request: h11.Request, name: bytes) -> set[bytes]:
    return {t.strip().lower() for n, v in request.headers if n == name for t in v.split(b",")}


def _route(request: h11.Request, allow_upgrade: bool, allow_websocket: bool = False) -> tuple[_Route, bytes | None]:
    """What to do with an HTTP/1.1 request; for h2c also the padded HTTP2-Settings value."""
    if allow_websocket and _is_websocket(request):
        return _Route.WEBSOCKET, None
    if not allow_upgrade or request.method == b"CONNECT" or b"h2c" not in _tokens(request, b"upgrade"):
        return _Route.REFUSE, None
    if not {b"upgrade", b"http2-settings"} <= _tokens(request, b"connection"):
        return _Route.REFUSE, None
    values = [v for n, v in request.headers if n == b"http2-settings"]
    if len(values) != 1:
        return _Route.REFUSE, None
    settings = _check_settings(values[0])
    return (_Route.H2C, settings) if settings is not None else (_Route.REFUSE, None)


def _is_websocket(request: h11.Request) -> bool:
    """A valid RFC 6455 §4.1 opening handshake: GET, Upgrade: websocket, key, version 13, no body."""
    if request.method != b"GET" or request.http_version != b"1.1":
        return False
    if b"websocket" not in _tokens(request, b"upgrade") or b"upgrade" not in _tokens(request, b"connection"):
        return False
    fields = dict(request.headers)
    if fields.get(b"sec-websocket-version", b"").strip() != b"13":
        return False
    if fields.get(b"content-length", b"0").strip() != b"0" or b"transfer-encoding" in fields:
        return False
    keys = [v for n, v in request.headers if n == b"sec-websocket-key"]
    if len(keys) != 1:
        return False
    try:
        return len(base64.b64decode(keys[0].strip(), validate=True)) == 16
    except (binascii.Error, ValueError):
        return False


def _check_settings(value: bytes) -> bytes | None:
    """The HTTP2-Settings value with base64 padding restored, or None if it is not a SETTINGS payload."""
    padded = value.strip() + b"=" * (-len(value.strip()) % 4)
    try:
        payload = base64.urlsafe_b64decode(padded)
        SettingsFrame(0).parse_body(memoryview(payload))
    except (binascii.Error, ValueError, HyperframeError):
        return None
    return padded


async def _upgrade(
    conn: h11.Connection, stream: trio.abc.Stream, request: h11.Request, settings: bytes, config: Config, who: str
) -> Handoff | None:
    limit = config.initial_window_size
    length = next((int(v) for n, v in request.headers if n == b"content-length"), 0)
    if length > limit:
        log.info("h2c upgrade from %s refused: request body of %d bytes exceeds %d", who, length, limit)
        await _answer(conn, stream, 413, _TOO_LARGE)
        return None
    if conn.they_are_waiting_for_100_continue:
        await stream.send_all(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
    body = bytearray()
    while True:
        event = await _next(conn, stream)
        if isinstance(event, h11.Data):
            body += event.data
            if len(body) > limit:
                log.info("h2c upgrade from %s refused: request body exceeds %d bytes", who, limit)
                await _answer(conn, stream, 413, _TOO_LARGE)
                return None
        elif isinstance(event, h11.EndOfMessage):
            break
        else:  # ConnectionClosed before the body ended
            log.debug("connection from %s closed during an h2c upgrade request", who)
            return None
    switch = h11.InformationalResponse(
        status_code=101, headers=[(b"connection", b"Upgrade"), (b"upgrade", b"h2c")], reason=b"Switching Protocols"
    )
    await stream.send_all(conn.send(switch))
    trailing, _closed = conn.trailing_data
    log.debug("connection from %s upgraded to h2c", who)
    return Handoff(ReplayStream(stream, bytes(trailing)), H2CUpgrade(settings, _h2_headers(request), bytes(body)))


def _h2_headers(request: h11.Request) -> Headers:
    """The HTTP/1.1 request as HTTP/2 fields: pseudo-headers first, connection-specific fields dropped."""
    target = request.target
    authority = next((v for n, v in request.headers if n == b"host"), b"")
    if target.lower().startswith(b"http://"):  # absolute-form
        rest = target[7:]
        slash = rest.find(b"/")
        authority, target = (rest, b"/") if slash < 0 else (rest[:slash], rest[slash:])
    headers: Headers = [(b":method", request.method), (b":scheme", b"http")]
    if authority:
        headers.append((b":authority", authority))
    headers.append((b":path", target))
    for name, value in request.headers:
        if name in _HOP_BY_HOP or (name == b"te" and value.strip().lower() != b"trailers"):
            continue
        headers.append((bytes(name), bytes(value)))
    return headers


_BAD_FRAMING = b"Bad request: Transfer-Encoding and Content-Length together (RFC 9112 section 6.3).\n"
_MALFORMED = b"Bad request: this HTTP/1.1 message cannot be read.\n"
_TOO_LARGE = b"Request body too large for an HTTP/2 upgrade; send it over HTTP/2.\n"
_HINT = (
    b"505 HTTP Version Not Supported\n\n"
    b"This server speaks HTTP/2 only.\n"
    b"Over TLS, use a client that offers HTTP/2 via ALPN (any browser; curl --http2 https://...).\n"
    b"Over cleartext, use prior knowledge (curl --http2-prior-knowledge http://...)\n"
    b"or the HTTP/1.1 Upgrade (curl --http2 http://...).\n"
)


async def _answer(conn: h11.Connection, stream: trio.abc.Stream, status: int, body: bytes) -> None:
    """Send a short plain-text response with ``Connection: close``, then linger briefly before the close."""
    reasons = {
        400: b"Bad Request",
        413: b"Content Too Large",
        431: b"Request Header Fields Too Large",
        501: b"Not Implemented",
        505: b"HTTP Version Not Supported",
    }
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    data = conn.send(h11.Response(status_code=status, headers=headers, reason=reasons.get(status, b"")))
    data += conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
    await stream.send_all(data)
    # Closing with unread request bytes in the kernel buffer makes TCP send RST,
    # which can destroy the answer before the client reads it: drain a little.
    drained = 0
    with trio.move_on_after(_LINGER_SECONDS):
        while drained < _LINGER_BYTES:
            chunk = await stream.receive_some(_READ)
            if not chunk:
                break
            drained += len(chunk)
