"""The ``h2gate.frames`` ASGI extension (``--enable-frame-api``): per-frame events and raw frame writes.

Made for testing HTTP/2 *clients*, the way the web-platform-tests H2 server
lets a handler react to each frame and write frames the normal path would
refuse. Off by default, loopback binds only unless ``unsafe-any-bind``.

Reading: :class:`FrameTap` (one per connection, called by the connection's
reader after each h2 event) queues an ``h2gate.frames.headers`` /
``h2gate.frames.data`` message per HEADERS and DATA frame of every accepted
request stream. :class:`FrameAPI` hands them to the app through ``receive()``,
each before the ``http.request`` that carries its bytes.

Writing: ``h2gate.frames.send_headers``, ``send_continuation``, ``send_data``,
``end_stream`` and ``push_promise`` are serialized with hyperframe and go to
the connection's single writer behind whatever h2 had queued, so the HPACK
encoder (h2's own, shared) sees blocks in wire order. They bypass h2's state
machine and flow control: from the first raw write on, h2's idea of the
stream no longer matches the wire, so the connection is *tainted* and is
closed with GOAWAY once that stream's app returns.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import h2.events
from h2.errors import ErrorCodes
from hyperframe.exceptions import HyperframeError
from hyperframe.frame import ContinuationFrame, DataFrame, Frame, HeadersFrame, PushPromiseFrame

from h2gate.asgi.http_response import AppMistake
from h2gate.asgi.types import Message, Scope
from h2gate.config import Config
from h2gate.errors import ClientDisconnected, StartupError
from h2gate.net.binds import parse_bind
from h2gate.protocol.exchange import Exchange

if TYPE_CHECKING:
    from h2gate.asgi.http import HTTPCycle
    from h2gate.protocol.connection import Connection

log = logging.getLogger("h2gate.error")
EXTENSION = "h2gate.frames"
MAX_STREAM_ID = 2**31 - 1


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_frame_api(config: Config) -> None:
    """Refuse ``--enable-frame-api`` on a bind other clients can reach, else warn loudly. Raises StartupError."""
    if config.frame_api == "off":
        return
    if config.frame_api == "on":
        if os.environ.get("LISTEN_FDS"):
            raise StartupError(
                "--enable-frame-api cannot check systemd's sockets are loopback; "
                "use --enable-frame-api=unsafe-any-bind to allow them"
            )
        for text in config.bind:
            bind = parse_bind(text)
            if bind.kind == "unix":
                continue
            if bind.kind == "fd" or not _is_loopback(bind.host):
                raise StartupError(
                    f"--enable-frame-api is for loopback binds only and {bind} is not one "
                    "(use --enable-frame-api=unsafe-any-bind to allow it anyway)"
                )
    log.warning(
        "FRAME API ENABLED (--enable-frame-api=%s): apps can read every frame and write raw frames that "
        "break the HTTP/2 protocol; for testing clients only, never in production",
        config.frame_api,
    )


def _flags(data: h2.events.DataReceived) -> list[str]:
    flags = ["END_STREAM"] if data.stream_ended is not None else []
    if (data.flow_controlled_length or 0) > len(data.data or b""):
        flags.append("PADDED")  # padding counts against flow control, the payload does not carry it
    return flags


class FrameTap:
    """Per-connection: the frame messages of each accepted request stream, until its app takes them."""

    def __init__(self) -> None:
        self.streams: dict[int, deque[Message]] = {}

    def __call__(self, conn: Connection, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.DataReceived):
            notes = self.streams.get(event.stream_id)
            if notes is not None:
                data = bytes(event.data or b"")
                flags = _flags(event)
                end = "END_STREAM" in flags
                notes.append({"type": "h2gate.frames.data", "data": data, "end_stream": end, "flags": flags})
        elif isinstance(event, h2.events.RequestReceived | h2.events.TrailersReceived):
            stream_id = event.stream_id
            headers = [(bytes(name), bytes(value)) for name, value in event.headers or ()]
            if isinstance(event, h2.events.RequestReceived):
                # Streams whose app has finished leave here, so the map stays as small as the open streams.
                for gone in [sid for sid in self.streams if sid not in conn.exchanges]:
                    del self.streams[gone]
                if stream_id not in conn.exchanges or (b":method", b"CONNECT") in headers:
                    return  # refused or malformed (no app runs), or CONNECT (WebSocket, not an http scope)
                self.streams[stream_id] = deque()
            notes = self.streams.get(stream_id)
            if notes is not None:
                end = event.stream_ended is not None
                notes.append({"type": "h2gate.frames.headers", "headers": headers, "end_stream": end})


def _header_block(conn: Connection, message: Message, kind: str) -> bytes:
    """``block`` (raw bytes, sent as they are) or ``headers`` encoded with the connection's own HPACK encoder."""
    block = message.get("block")
    if block is not None:
        if not isinstance(block, bytes | bytearray):
            raise AppMistake(f"{kind} block must be bytes")
        return bytes(block)
    headers = message.get("headers")
    if not isinstance(headers, list | tuple):
        raise AppMistake(f"{kind} needs headers (a list of [name, value] pairs) or block (bytes)")
    pairs = []
    for item in headers:
        try:
            name, value = item
        except (TypeError, ValueError):
            raise AppMistake(f"{kind} header {item!r} is not a [name, value] pair") from None
        if not isinstance(name, bytes | str) or not isinstance(value, bytes | str):
            raise AppMistake(f"{kind} header {item!r} must be bytes or str")
        pairs.append((name, value))
    return bytes(conn.h2.encoder.encode(pairs))


def _status(message: Message) -> int:
    for item in message.get("headers") or ():
        if isinstance(item, list | tuple) and len(item) == 2 and item[0] in (b":status", ":status"):
            try:
                return int(item[1])
            except ValueError:
                return 0
    return 0


class FrameAPI:
    """receive()/send() for one request with the frame extension: frame messages first, raw writes aside."""

    def __init__(self, exchange: Exchange, scope: Scope, cycle: HTTPCycle) -> None:
        self.exchange = exchange
        self.cycle = cycle
        self.conn = exchange.conn
        tap = self.conn.frame_tap
        assert isinstance(tap, FrameTap)
        # The stream of an h2c Upgrade came as HTTP/1.1, with no frames to report.
        self.notes = tap.streams.setdefault(exchange.stream_id, deque())
        self.body_done = False  # the final http.request was delivered
        self.tainted = False  # a raw frame went out: h2's view of this connection is no longer the wire's
        scope["extensions"][EXTENSION] = {}

    async def receive(self) -> Message:
        exchange = self.exchange
        while True:
            if self.notes:
                return self.notes.popleft()
            if self.body_done or exchange.disconnected or exchange.request_ended or exchange.buffered:
                message = await self.cycle.receive()
                if message.get("type") == "http.request" and not message.get("more_body"):
                    self.body_done = True
                return message
            await exchange.wait_readable()

    async def send(self, message: Message) -> None:
        kind = message.get("type") if isinstance(message, dict) else None
        writer = _WRITERS.get(kind)  # type: ignore[arg-type]
        if writer is None:
            await self.cycle.send(message)
            return
        stream_id = message.get("stream_id", self.exchange.stream_id)
        if not isinstance(stream_id, int) or isinstance(stream_id, bool) or not 1 <= stream_id <= MAX_STREAM_ID:
            raise AppMistake(f"{kind} stream_id must be an int 1..2^31-1, not {stream_id!r}")
        try:
            frames = writer(self, message, stream_id)
            data = b"".join(frame.serialize() for frame in frames)
        except (HyperframeError, ValueError, TypeError) as exc:
            raise AppMistake(f"{kind}: cannot build the frame: {exc}") from None
        await self._write(stream_id, frames, data)
        if stream_id == self.exchange.stream_id:
            self.exchange.bytes_sent += sum(len(f.data) for f in frames if isinstance(f, DataFrame))
            if kind == "h2gate.frames.send_headers" and not self.exchange.status:
                self.exchange.status = _status(message)
            if any("END_STREAM" in frame.flags for frame in frames):
                self._ended()

    async def _write(self, stream_id: int, frames: list[Frame], data: bytes) -> None:
        conn = self.conn
        if conn.closed:
            raise ClientDisconnected(f"stream {self.exchange.stream_id}: the connection is closed")
        for frame in frames:
            log.debug("frame API: stream %d wrote %r", self.exchange.stream_id, frame)
        # Whatever h2 queued so far goes first: HPACK blocks must reach the peer in encoding order.
        conn._raw_out += (conn.h2.data_to_send(), data)
        conn.queued += len(data)
        conn.wake_writer()
        if not self.tainted:
            self.tainted = True
            self.exchange.headers_sent = True  # an app failure from now on resets the stream, no 500
            self.cycle.response.started = True  # the raw writer owns the response
        await conn.wait_flushable()

    def _ended(self) -> None:
        """END_STREAM went out raw on the app's own stream: the response is over as far as we are concerned."""
        response, exchange = self.cycle.response, self.exchange
        response.body_done = response.complete = True
        exchange.response_ended = True
        if exchange.request_ended:
            exchange.done.set()
        else:
            exchange.reset(ErrorCodes.NO_ERROR)  # stop the upload, as an early response does

    def finish(self) -> None:
        """The app returned: a tainted connection takes no new streams and closes once the others end."""
        tap = self.conn.frame_tap
        if isinstance(tap, FrameTap):
            tap.streams.pop(self.exchange.stream_id, None)  # later frames of this stream have no reader
        if self.tainted:
            log.debug("frame API: stream %d wrote raw frames; closing the connection", self.exchange.stream_id)
            self.conn.shutdown()


def _end_flag(message: Message, name: str, default: bool) -> list[str]:
    return [name] if bool(message.get(name.lower(), default)) else []


def _send_headers(api: FrameAPI, message: Message, stream_id: int) -> list[Frame]:
    block = _header_block(api.conn, message, "h2gate.frames.send_headers")
    flags = _end_flag(message, "END_HEADERS", True) + _end_flag(message, "END_STREAM", False)
    return [HeadersFrame(stream_id, block, flags=flags)]


def _send_continuation(api: FrameAPI, message: Message, stream_id: int) -> list[Frame]:
    block = _header_block(api.conn, message, "h2gate.frames.send_continuation")
    return [ContinuationFrame(stream_id, block, flags=_end_flag(message, "END_HEADERS", True))]


def _send_data(api: FrameAPI, message: Message, stream_id: int) -> list[Frame]:
    data = message.get("data", b"")
    if not isinstance(data, bytes | bytearray | memoryview):
        raise AppMistake(f"h2gate.frames.send_data data must be bytes, not {type(data).__name__}")
    return [DataFrame(stream_id, bytes(data), flags=_end_flag(message, "END_STREAM", False))]


def _end_stream(api: FrameAPI, message: Message, stream_id: int) -> list[Frame]:
    return [DataFrame(stream_id, b"", flags=["END_STREAM"])]


def _push_promise(api: FrameAPI, message: Message, stream_id: int) -> list[Frame]:
    promised = message.get("promised_stream_id")
    if not isinstance(promised, int) or isinstance(promised, bool) or not 1 <= promised <= MAX_STREAM_ID:
        raise AppMistake(f"h2gate.frames.push_promise promised_stream_id must be an int 1..2^31-1, not {promised!r}")
    block = _header_block(api.conn, message, "h2gate.frames.push_promise")
    flags = _end_flag(message, "END_HEADERS", True)
    return [PushPromiseFrame(stream_id, promised_stream_id=promised, data=block, flags=flags)]


_WRITERS: dict[str, Callable[[FrameAPI, Message, int], list[Frame]]] = {
    "h2gate.frames.send_headers": _send_headers,
    "h2gate.frames.send_continuation": _send_continuation,
    "h2gate.frames.send_data": _send_data,
    "h2gate.frames.end_stream": _end_stream,
    "h2gate.frames.push_promise": _push_promise,
}
