"""ASGI ``websocket`` scope over an HTTP/2 stream (RFC 8441) or an HTTP/1.1 upgrade (RFC 6455).

Theory of operation
-------------------
Over HTTP/2 a WebSocket is one stream opened by an *extended CONNECT*
(``:method CONNECT``, ``:protocol websocket``), which clients send only once
the server advertised ``SETTINGS_ENABLE_CONNECT_PROTOCOL = 1``. ``:status 200``
accepts it; from then on the stream's DATA bytes, both ways, are plain RFC 6455
frames. END_STREAM is the orderly close of the transport (after the WebSocket
closing handshake) and RST_STREAM its abortive close (RFC 8441 §5).

Browsers use that only on an HTTP/2 connection they already have to the
origin; with none they open a new connection offering ALPN ``http/1.1`` and
send a classic ``GET`` + ``Upgrade: websocket``. :mod:`h2gate.net.negotiate` lets
that one kind of HTTP/1.1 request through (``--ws-http1``) and hands over the
h11 connection still waiting for its answer: ``101 Switching Protocols``
accepts it, and the TCP/TLS stream carries the frames.

Both transports are a :class:`Channel` (read bytes, write bytes, accept,
deny with an HTTP response, end, abort); :class:`WebSocketSession` turns the
app's ASGI messages into frames with ``wsproto``'s frame-level
:class:`wsproto.connection.Connection` (no handshake inside it: the handshake
is the HTTP exchange above) and back:

* Once accepted, a *reader* task (:meth:`WebSocketSession._pump`) reads the
  transport whether or not the app is inside ``receive()``: pings are answered
  and close frames replied to as soon as they arrive, and whole messages are
  queued for ``receive()``. The queue is the backpressure: while the app is
  not receiving and :data:`QUEUE_BYTES` (queued plus half-assembled) are held,
  the reader stops reading, so HTTP/2 DATA is no longer acknowledged
  (WINDOW_UPDATE) and the client is held to its window; frames behind that
  point (pings included) wait for the app. While the app waits in
  ``receive()`` the reader goes on until a message is complete. A message is
  assembled up to ``--ws-max-message-size`` bytes (after permessage-deflate);
  beyond that the connection is closed with 1009. Compressed input is fed to wsproto in small
  slices so one read cannot inflate into a huge buffer before the check.
* ``send()`` frames and writes under a lock (``receive()`` writes pongs and
  close replies too); on HTTP/2 ``Stream.send_data`` waits for the client's
  window, so a client that stops reading stalls only this WebSocket.
* Disconnect codes follow the ASGI spec: the client's close code (1005 when
  its close frame had none), 1006 when the transport ended or was reset
  without a close frame.
* Before ``websocket.accept`` the app may deny with ``websocket.close`` (403)
  or a full HTTP response (``websocket.http.response.start``/``.body``: on
  HTTP/2 on the CONNECT stream, on HTTP/1.1 a normal response then close). An
  app that returns without accepting gets a 403; one that fails, a 500.
* On server shutdown open WebSockets are closed with 1001 (the app sees the
  client's reply as ``websocket.disconnect``), so they end within the grace
  period instead of being cancelled at its end.
* After the app returns an open WebSocket is closed (1000, or 1011 when the
  app raised), the client's close reply is awaited for a bounded time, then
  the stream ends (END_STREAM) or the connection is closed.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any

import trio
from wsproto.connection import Connection as WSConnection
from wsproto.connection import ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Event, Ping, TextMessage
from wsproto.utilities import LocalProtocolError

from h2gate.asgi.http_response import byte_pairs
from h2gate.asgi.runner import AppRunner, loop_hint
from h2gate.asgi.types import Message, Scope
from h2gate.asgi.ws_channels import READ_SIZE, Channel, H1Channel, H2Channel
from h2gate.asgi.ws_scope import connect_protocol, deflate_for, websocket_scope
from h2gate.compiled import caused
from h2gate.errors import AppMistake, ClientDisconnected
from h2gate.http.head import Headers, split_head
from h2gate.net.negotiate import WebSocketUpgrade, _h2_headers
from h2gate.net.transport import Transport
from h2gate.observe.logs import access_logger
from h2gate.protocol.replies import simple_response
from h2gate.protocol.signal import Signal
from h2gate.protocol.stream import Stream

__all__ = ["WebSocketSession", "connect_protocol", "handle_websocket", "handle_websocket_http1"]

log = logging.getLogger("h2gate.error")

#: Seconds we wait for the client's close frame (and end of stream) once we sent ours.
CLOSE_TIMEOUT = 5.0
#: Compressed bytes fed to wsproto at a time (bounds what one step can inflate to).
_DEFLATE_SLICE = 4096
#: Bytes of received messages held for an app that is not in receive() before the reader stops reading.
QUEUE_BYTES = 64 * 1024


# -- the session -----------------------------------------------------------------------------


class WebSocketSession:
    """receive()/send() for one WebSocket, over either channel."""

    def __init__(self, channel: Channel, scope: Scope, headers: Headers, max_message_size: int) -> None:
        self.channel = channel
        self.scope = scope
        self.headers = headers
        self.max_size = max_message_size
        self.ws: WSConnection | None = None
        self.accepted = False
        self.denying = False  # websocket.http.response.start sent
        self.denied = False  # the denial response (or a 403) is complete
        self.close_sent = False
        self.disconnect: tuple[int, str] | None = None  # what receive() reports once the WebSocket is gone
        self.close_code: int | None = None  # for the access log
        self._connect_sent = False
        self._eof = False  # the transport ended or was reset
        self._unfed = b""
        self._slice = READ_SIZE
        self._events: deque[Event] = deque()
        self._parts: list[Any] = []
        self._size = 0
        self._lock = trio.Lock()
        self._nursery: trio.Nursery | None = None  # where the reader runs (set by _run)
        self._queue: deque[tuple[Message, int]] = deque()  # (message, its size) for receive()
        self._queued = 0
        self._reading = False  # the reader task runs
        self._waiting = False  # the app is inside receive()
        self._changed = Signal()  # a message was queued or taken, the app started waiting, the reader stopped

    # -- receive -----------------------------------------------------------------------------

    async def receive(self) -> Message:
        if not self._connect_sent:
            self._connect_sent = True
            return {"type": "websocket.connect"}
        if not self.accepted:
            if not self.denied:
                # Nothing can arrive before the answer; wait for the client to give up.
                try:
                    while await self.channel.read():
                        pass
                except ClientDisconnected:
                    pass
            self.disconnect = self.disconnect or (1006, "")
            return self._disconnect_message()
        self._waiting = True
        self._changed.fire()
        try:
            while not self._queue and self._reading:
                await self._changed.wait()
        finally:
            self._waiting = False
        if self._queue:
            message, size = self._queue.popleft()
            self._queued -= size
            self._changed.fire()
            return message
        return self._disconnect_message()

    async def _pump(self) -> None:
        """The reader: answers control frames at once, queues messages, stops while the queue is full."""
        try:
            while self.disconnect is None:
                event = await self._next_event(gated=True)
                if event is None:
                    break
                message = await self._handle(event)
                if message is not None:
                    size = len(message.get("bytes") or b"") + len(message.get("text") or "")  # text: ~chars
                    self._queue.append((message, size))
                    self._queued += size
                    self._changed.fire()
        except Exception:  # a bug here must end this WebSocket, not the connection
            log.exception("WebSocket %s: error in the reader", self.scope["path"])
            self._gone(1011, "")
        finally:
            self._reading = False
            self._changed.fire()

    async def _room(self) -> None:
        """Before the reader reads the transport: wait while too much is held for an app not receiving."""
        while not self._waiting and self._queued + self._size >= QUEUE_BYTES:
            await self._changed.wait()

    def _disconnect_message(self) -> Message:
        code, reason = self.disconnect or (1006, "")
        return {"type": "websocket.disconnect", "code": code, "reason": reason}

    async def _next_event(self, gated: bool = False) -> Event | None:
        """The next wsproto event, reading from the transport as needed; None once it is gone (1006 set).

        ``gated``: the reader's call, which reads the transport only when :meth:`_room` allows.
        """
        assert self.ws is not None
        while not self._events:
            if not self._unfed:
                if gated:
                    await self._room()
                try:
                    data = await self.channel.read()
                except ClientDisconnected:
                    data = b""
                if not data:
                    self._eof = True
                    self._gone(1006, "")
                    return None
                self._unfed = data
            chunk, self._unfed = self._unfed[: self._slice], self._unfed[self._slice :]
            try:
                self.ws.receive_data(chunk)
            except LocalProtocolError:  # already closed: discard
                continue
            self._events.extend(self.ws.events())
        return self._events.popleft()

    async def _handle(self, event: Event) -> Message | None:
        assert self.ws is not None
        if isinstance(event, (TextMessage, BytesMessage)):
            if self.close_sent:
                return None  # closing: data still in flight is dropped
            data = event.data
            self._size += len(data.encode("utf-8")) if isinstance(data, str) else len(data)
            if self._size > self.max_size:
                log.info(
                    "WebSocket %s: message larger than %d bytes; closing with 1009", self.scope["path"], self.max_size
                )
                await self._close(1009, "message too big")
                self._gone(1009, "message too big")
                return None
            self._parts.append(data)
            if not event.message_finished:
                return None
            parts, self._parts, self._size = self._parts, [], 0
            if isinstance(event, TextMessage):
                return {"type": "websocket.receive", "text": "".join(parts)}
            return {"type": "websocket.receive", "bytes": b"".join(parts)}
        if isinstance(event, Ping):
            if self.ws.state is ConnectionState.OPEN:
                try:
                    await self._write(event.response())
                except ClientDisconnected:
                    pass  # the next read sees the transport gone
            return None
        if isinstance(event, CloseConnection):
            if not self.close_sent:
                # The client started the close (or sent a bad frame: wsproto's code): answer it.
                await self._close(event.code, event.reason or "")
            self._gone(int(event.code), event.reason or "")
            return None
        return None  # Pong

    def _gone(self, code: int, reason: str) -> None:
        if self.disconnect is None:
            self.disconnect = (code, reason)
        if self.close_code is None:
            self.close_code = code

    # -- send --------------------------------------------------------------------------------

    async def _write(self, event: Event) -> None:
        assert self.ws is not None
        async with self._lock:
            try:
                data = self.ws.send(event)
            except LocalProtocolError:
                raise caused(ClientDisconnected("the WebSocket is closed"), None)
            await self.channel.write(data)

    async def _close(self, code: int, reason: str) -> None:
        if self.close_sent or self.ws is None:
            return
        self.close_sent = True
        if self.close_code is None:
            self.close_code = code
        try:
            await self._write(CloseConnection(code=code, reason=reason or None))
        except ClientDisconnected:
            pass

    async def send(self, message: Message) -> None:
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "websocket.accept":
            await self._accept(message)
        elif kind == "websocket.send":
            if not self.accepted:
                raise AppMistake("websocket.send before websocket.accept")
            if self.disconnect is not None or self.close_sent:
                raise ClientDisconnected("the WebSocket is closed")
            text, data = message.get("text"), message.get("bytes")
            if text is not None and data is None:
                if not isinstance(text, str):
                    raise AppMistake("websocket.send text must be str")
                await self._write(TextMessage(data=text))
            elif data is not None and text is None:
                if not isinstance(data, (bytes, bytearray, memoryview)):
                    raise AppMistake("websocket.send bytes must be bytes")
                await self._write(BytesMessage(data=bytes(data)))
            else:
                raise AppMistake("websocket.send needs exactly one of text and bytes")
        elif kind == "websocket.close":
            if not self.accepted:
                if self.denying or self.denied:
                    raise AppMistake("websocket.close after a denial response")
                self.denied = True
                await self.channel.fail(403)
                return
            if self.disconnect is None:
                code = message.get("code", 1000)
                reason = message.get("reason") or ""
                if not isinstance(code, int) or not isinstance(reason, str):
                    raise AppMistake("websocket.close code must be an int and reason a str")
                await self._close(code, reason)
        elif kind == "websocket.http.response.start":
            if self.accepted or self.denying or self.denied:
                raise AppMistake("websocket.http.response.start after the handshake was answered")
            self.channel.deny_start(message)
            self.denying = True
        elif kind == "websocket.http.response.body":
            if not self.denying or self.denied:
                raise AppMistake("websocket.http.response.body without a denial response in progress")
            self.denied = await self.channel.deny_body(message)
        else:
            raise AppMistake(f"unexpected ASGI message type {kind!r} on a websocket connection")

    async def _accept(self, message: Message) -> None:
        if self.accepted or self.denying or self.denied:
            raise AppMistake("websocket.accept after the handshake was answered")
        given = byte_pairs(message.get("headers") or [], "websocket.accept header")
        headers = [(name.lower(), value) for name, value in given]
        subprotocol = message.get("subprotocol")
        if subprotocol is not None:
            headers = [h for h in headers if h[0] != b"sec-websocket-protocol"]
            headers.append((b"sec-websocket-protocol", str(subprotocol).encode("latin-1")))
        headers = [h for h in headers if h[0] != b"sec-websocket-extensions"]
        deflate, accepted = deflate_for(self.headers)
        if accepted is not None:
            headers.append((b"sec-websocket-extensions", accepted))
            self._slice = _DEFLATE_SLICE
        trailing = await self.channel.accept(headers)
        self.ws = WSConnection(ConnectionType.SERVER, extensions=[deflate] if deflate else None)
        self._unfed = trailing
        self.accepted = True
        if self._nursery is not None:
            self._reading = True
            self._nursery.start_soon(self._pump)

    # -- after the app -----------------------------------------------------------------------

    async def finish(self, failed: bool) -> None:
        """The app returned (or raised): answer the handshake or close the WebSocket properly."""
        channel = self.channel
        if not self.accepted:
            if self.denying and not self.denied:
                log.error("%s: the app returned before finishing its denial response", self.scope["path"])
                channel.abort()
            elif not self.denied:
                await channel.fail(500 if failed else 403)
            return
        assert self.ws is not None
        if self.ws.state is not ConnectionState.CLOSED and not self._eof:
            await self._close(1011 if failed else 1000, "")
            with trio.move_on_after(CLOSE_TIMEOUT):
                while self.ws.state is not ConnectionState.CLOSED and not self._eof:
                    event = await self._next_event()
                    if isinstance(event, CloseConnection):
                        self._gone(int(event.code), event.reason or "")
        await channel.end()


async def _going_away(session: WebSocketSession, stopping: trio.Event) -> None:
    """Server shutdown: close an open WebSocket with 1001; the app sees the client's reply as a disconnect."""
    await stopping.wait()
    if session.accepted and session.disconnect is None:
        await session._close(1001, "server shutting down")


async def _run(
    session: WebSocketSession, runner: AppRunner, transport: Transport, label: str, stopping: trio.Event | None
) -> None:
    scope = session.scope
    started = time.perf_counter()
    failed = False
    async with trio.open_nursery() as watcher:
        session._nursery = watcher
        if stopping is not None:
            watcher.start_soon(_going_away, session, stopping)
        try:
            await runner.call(scope, session.receive, session.send)
        except ClientDisconnected:
            log.debug("WebSocket %s: client went away", scope["path"])
        except AppMistake as exc:
            log.error("WebSocket %s: ASGI error in the app: %s", scope["path"], exc)
            failed = True
        except Exception as exc:
            log.exception("WebSocket %s: exception in the app%s", scope["path"], loop_hint(runner, exc))
            failed = True
        watcher.cancel_scope.cancel()
    try:
        await session.finish(failed)
    except ClientDisconnected:
        pass
    if access_logger.isEnabledFor(logging.INFO):
        peer = transport.peer
        client = f"{peer[0]}:{peer[1]}" if peer and peer[1] is not None else "-"
        target = scope["raw_path"].decode("latin-1")
        if scope["query_string"]:
            target += "?" + scope["query_string"].decode("latin-1")
        access_logger.info(
            '%s - "WEBSOCKET %s HTTP/%s" %s close=%s %.3fs%s',
            client,
            target,
            session.channel.http_version,
            session.channel.status or "-",
            session.close_code if session.close_code is not None else "-",
            time.perf_counter() - started,
            label,
        )


async def handle_websocket(
    exchange: Stream,
    transport: Transport,
    runner: AppRunner,
    *,
    root_path: str,
    state: dict[str, Any],
    server_header: bool,
    max_message_size: int,
    stopping: trio.Event | None = None,
) -> None:
    """Serve an RFC 8441 extended CONNECT stream as an ASGI websocket."""
    scope = websocket_scope(exchange.head, transport, root_path, state, "2")
    if scope is None:
        await simple_response(exchange, 400, b"Extended CONNECT without :path\n", server_header)
        return
    session = WebSocketSession(H2Channel(exchange, server_header), scope, exchange.headers, max_message_size)
    await _run(session, runner, transport, f" stream={exchange.stream_id}", stopping)


async def handle_websocket_http1(
    transport: Transport,
    upgrade: WebSocketUpgrade,
    runner: AppRunner,
    *,
    root_path: str,
    state: dict[str, Any],
    server_header: bool,
    max_message_size: int,
    stopping: trio.Event | None = None,
) -> None:
    """Serve an HTTP/1.1 WebSocket upgrade (the connection is the WebSocket's) as an ASGI websocket."""
    headers = _h2_headers(upgrade.request)
    headers[1] = (b":scheme", transport.scheme.encode())
    scope = websocket_scope(split_head(headers), transport, root_path, state, "1.1")
    assert scope is not None
    channel = H1Channel(transport.stream, upgrade, server_header)
    session = WebSocketSession(channel, scope, headers, max_message_size)
    try:
        await _run(session, runner, transport, "", stopping)
    finally:
        await channel.abort_async()
