"""The ``h2gate.frames`` ASGI extension (``--enable-frame-api``): per-frame events and raw frame writes.

Made for testing HTTP/2 *clients*, the way the web-platform-tests H2 server
lets a handler react to each frame and write frames the normal path would
refuse. Off by default, loopback binds only unless ``unsafe-any-bind``.

Reading: :class:`FrameTap` (one per connection, called by the protocol core
after each codec event) queues an ``h2gate.frames.headers`` /
``h2gate.frames.data`` message per HEADERS and DATA frame of every accepted
request stream. :class:`FrameAPI` hands them to the app through ``receive()``,
each before the ``http.request`` that carries its bytes.

Writing: ``h2gate.frames.send_headers``, ``send_continuation``, ``send_data``,
``end_stream`` and ``push_promise`` are serialized with hyperframe and go to
the connection's single writer behind whatever the codec had queued, so the
HPACK encoder (the codec's own, shared) sees blocks in wire order. They bypass
the codec's state machine and flow control: from the first raw write on, its
idea of the stream no longer matches the wire, so the connection is *tainted*
and is closed gracefully once that stream's app returns.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from hyperframe.exceptions import HyperframeError
from hyperframe.frame import ContinuationFrame, DataFrame, Frame, HeadersFrame, PushPromiseFrame

from h2gate.asgi.types import Message, Scope
from h2gate.compiled import caused
from h2gate.config import Config
from h2gate.errors import AppMistake, StartupError
from h2gate.net.binds import parse_bind
from h2gate.protocol import codec as ev
from h2gate.protocol.stream import Stream

if TYPE_CHECKING:
    from h2gate.asgi.http import HTTPCycle
    from h2gate.protocol.core import ConnectionCore

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


def _flags(data: ev.DataReceived) -> list[str]:
    flags = ["END_STREAM"] if data.ended else []
    if data.flow_length > len(data.data):
        flags.append("PADDED")  # padding counts against flow control, the payload does not carry it
    return flags


class FrameTap:
    """Per-connection: the frame messages of each accepted request stream, until its app takes them."""

    def __init__(self) -> None:
        self.streams: dict[int, deque[Message]] = {}

    def __call__(self, core: ConnectionCore, event: ev.Event) -> None:
        if isinstance(event, ev.DataReceived):
            notes = self.streams.get(event.stream_id)
            if notes is not None:
                flags = _flags(event)
                end = "END_STREAM" in flags
                data = bytes(event.data)
                notes.append({"type": "h2gate.frames.data", "data": data, "end_stream": end, "flags": flags})
        elif isinstance(event, ev.RequestReceived | ev.TrailersReceived):
            stream_id = event.stream_id
            headers = [(bytes(name), bytes(value)) for name, value in event.headers]
            if isinstance(event, ev.RequestReceived):
                # Streams whose app has finished leave here, so the map stays as small as the open streams.
                for gone in [sid for sid in self.streams if sid not in core.streams]:
                    del self.streams[gone]
                if stream_id not in core.streams or (b":method", b"CONNECT") in headers:
                    return  # refused or malformed (no app runs), or CONNECT (WebSocket, not an http scope)
                self.streams[stream_id] = deque()
            notes = self.streams.get(stream_id)
            if notes is not None:
                end = event.ended if isinstance(event, ev.RequestReceived) else True
                notes.append({"type": "h2gate.frames.headers", "headers": headers, "end_stream": end})


def _header_block(stream: Stream, message: Message, kind: str) -> bytes:
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
            raise caused(AppMistake(f"{kind} header {item!r} is not a [name, value] pair"), None)
        if not isinstance(name, bytes | str) or not isinstance(value, bytes | str):
            raise AppMistake(f"{kind} header {item!r} must be bytes or str")
        pairs.append((name, value))
    return stream.encode_block([(_bytes(name), _bytes(value)) for name, value in pairs])


def _bytes(text: bytes | str) -> bytes:
    return text.encode("utf-8") if isinstance(text, str) else text


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

    def __init__(self, exchange: Stream, scope: Scope, cycle: HTTPCycle, tap: FrameTap) -> None:
        self.exchange = exchange
        self.cycle = cycle
        self.tap = tap
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
            raise caused(AppMistake(f"{kind}: cannot build the frame: {exc}"), None)
        for frame in frames:
            log.debug("frame API: stream %d wrote %r", self.exchange.stream_id, frame)
        own = stream_id == self.exchange.stream_id
        body = sum(len(f.data) for f in frames if isinstance(f, DataFrame)) if own else 0
        status = _status(message) if own and kind == "h2gate.frames.send_headers" else 0
        ended = own and any("END_STREAM" in frame.flags for frame in frames)
        self.tainted = True
        await self.exchange.write_raw(data, body_bytes=body, status=status, end_stream=ended)
        if ended:
            response = self.cycle.response
            response.body_done = response.complete = True
        elif not self.cycle.response.started:
            self.cycle.response.started = True  # the raw writer owns the response

    def finish(self) -> None:
        """The app returned: a tainted connection takes no new streams and closes once the others end."""
        self.tap.streams.pop(self.exchange.stream_id, None)  # later frames of this stream have no reader
        if self.tainted:
            log.debug("frame API: stream %d wrote raw frames; closing the connection", self.exchange.stream_id)
            self.exchange.drain_connection()


def _end_flag(message: Message, name: str, default: bool) -> list[str]:
    return [name] if bool(message.get(name.lower(), default)) else []


def _send_headers(api: FrameAPI, message: Message, stream_id: int) -> list[Frame]:
    block = _header_block(api.exchange, message, "h2gate.frames.send_headers")
    flags = _end_flag(message, "END_HEADERS", True) + _end_flag(message, "END_STREAM", False)
    return [HeadersFrame(stream_id, block, flags=flags)]


def _send_continuation(api: FrameAPI, message: Message, stream_id: int) -> list[Frame]:
    block = _header_block(api.exchange, message, "h2gate.frames.send_continuation")
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
    block = _header_block(api.exchange, message, "h2gate.frames.push_promise")
    flags = _end_flag(message, "END_HEADERS", True)
    return [PushPromiseFrame(stream_id, promised_stream_id=promised, data=block, flags=flags)]


_WRITERS: dict[str, Callable[[FrameAPI, Message, int], list[Frame]]] = {
    "h2gate.frames.send_headers": _send_headers,
    "h2gate.frames.send_continuation": _send_continuation,
    "h2gate.frames.send_data": _send_data,
    "h2gate.frames.end_stream": _end_stream,
    "h2gate.frames.push_promise": _push_promise,
}
