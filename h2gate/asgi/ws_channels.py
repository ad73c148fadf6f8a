"""The two transports a WebSocket runs over, behind one small interface.

An HTTP/2 stream (RFC 8441: the extended CONNECT's DATA frames) and an
HTTP/1.1 connection handed over after ``Upgrade: websocket`` (RFC 6455) each
read bytes, write bytes, accept, deny with an HTTP response, end and abort;
:mod:`h2gate.asgi.websocket` speaks the WebSocket protocol over either.
"""

from __future__ import annotations

import logging
from typing import Protocol

import h11
import trio
from wsproto.utilities import generate_accept_token

from h2gate.asgi.http_response import HTTPResponse
from h2gate.asgi.types import Message
from h2gate.errors import AppMistake, ClientDisconnected, ErrorCode
from h2gate.http.head import Headers
from h2gate.net.negotiate import WebSocketUpgrade
from h2gate.protocol.replies import HeaderError, fail, prepare_headers, simple_response
from h2gate.protocol.stream import Stream

log = logging.getLogger("h2gate.error")

#: Seconds the client gets to end its side of an HTTP/2 stream after our END_STREAM (then RST_STREAM).
END_GRACE = 1.0
READ_SIZE = 64 * 1024


# -- transports ------------------------------------------------------------------------------


class Channel(Protocol):
    http_version: str

    @property
    def status(self) -> int: ...  # the response status sent (0: none yet)

    async def read(self) -> bytes: ...  # b"" at the orderly end; ClientDisconnected on a reset / lost transport
    async def write(self, data: bytes) -> None: ...
    async def accept(self, headers: Headers) -> bytes: ...  # returns bytes already received past the handshake
    def deny_start(self, message: Message) -> None: ...
    async def deny_body(self, message: Message) -> bool: ...  # True when the response is complete
    async def end(self) -> None: ...
    def abort(self) -> None: ...
    async def fail(self, status: int) -> None: ...


class H2Channel:
    """The WebSocket is one HTTP/2 stream (RFC 8441)."""

    http_version = "2"

    def __init__(self, exchange: Stream, server_header: bool) -> None:
        self.exchange = exchange
        self.server_header = server_header
        self.denial = HTTPResponse(exchange, head=False, server_header=server_header)

    @property
    def status(self) -> int:
        return self.exchange.status

    async def read(self) -> bytes:
        return await self.exchange.read()

    async def write(self, data: bytes) -> None:
        await self.exchange.send_data(data)

    async def accept(self, headers: Headers) -> bytes:
        try:
            block, _ = prepare_headers(headers, self.server_header)
        except HeaderError as exc:
            raise AppMistake(str(exc)) from None
        block[0] = (b":status", b"200")
        await self.exchange.send_headers(block)
        return b""

    def deny_start(self, message: Message) -> None:
        self.denial.start(message)

    async def deny_body(self, message: Message) -> bool:
        await self.denial.body(message)
        return self.denial.complete

    async def end(self) -> None:
        """END_STREAM after the closing handshake, then a bounded wait for the client's."""
        exchange = self.exchange
        if exchange.response_ended or exchange.disconnected:
            return
        try:
            if exchange.request_ended:
                await exchange.send_data(b"", end_stream=True)
                return
            # Half-close our side only: ending the response of a stream whose request side
            # is still open would reset it (the client's END_STREAM may follow).
            await exchange.end_response()
            with trio.move_on_after(END_GRACE):
                while await exchange.read():
                    pass
        except ClientDisconnected:
            pass

    def abort(self) -> None:
        self.exchange.reset(ErrorCode.CANCEL)

    async def fail(self, status: int) -> None:
        if status == 500:
            await fail(self.exchange, self.server_header)
        elif self.exchange.headers_sent:
            self.exchange.reset(ErrorCode.INTERNAL_ERROR)
        else:
            await simple_response(self.exchange, status, b"Forbidden\n", self.server_header)


class H1Channel:
    """The WebSocket owns an HTTP/1.1 connection (RFC 6455 upgrade)."""

    http_version = "1.1"

    def __init__(self, stream: trio.abc.Stream, upgrade: WebSocketUpgrade, server_header: bool) -> None:
        self.stream = stream
        self.conn = upgrade.conn
        self.request = upgrade.request
        self.server_header = server_header
        self.status = 0
        self.closed = False

    async def read(self) -> bytes:
        try:
            return bytes(await self.stream.receive_some(READ_SIZE))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise ClientDisconnected(f"WebSocket connection lost: {exc!r}") from None

    async def write(self, data: bytes) -> None:
        if self.closed:
            raise ClientDisconnected("WebSocket connection is closed")
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self.closed = True
            raise ClientDisconnected(f"WebSocket connection lost: {exc!r}") from None

    def _headers(self, headers: Headers) -> Headers:
        out = [(n, v) for n, v in headers if n.lower() not in (b"connection", b"upgrade")]
        if self.server_header and not any(n.lower() == b"server" for n, _ in out):
            out.append((b"server", b"h2gate"))
        return out

    async def accept(self, headers: Headers) -> bytes:
        key = next(v for n, v in self.request.headers if n == b"sec-websocket-key").strip()
        switch = h11.InformationalResponse(
            status_code=101,
            headers=[
                (b"upgrade", b"websocket"),
                (b"connection", b"Upgrade"),
                (b"sec-websocket-accept", generate_accept_token(key)),
                *self._headers(headers),
            ],
            reason=b"Switching Protocols",
        )
        try:
            data = self.conn.send(switch)
        except h11.LocalProtocolError as exc:
            raise AppMistake(f"invalid websocket.accept headers: {exc}") from None
        self.status = 101
        await self.write(data)
        trailing, _closed = self.conn.trailing_data
        return bytes(trailing)

    def deny_start(self, message: Message) -> None:
        status = message.get("status")
        if not isinstance(status, int) or isinstance(status, bool) or not 200 <= status <= 599:
            raise AppMistake(f"websocket.http.response.start has invalid status {status!r}")
        try:
            headers = [(bytes(n), bytes(v)) for n, v in message.get("headers", [])]
        except (TypeError, ValueError):
            raise AppMistake("websocket.http.response.start headers must be [name, value] byte pairs") from None
        self._pending = h11.Response(status_code=status, headers=[*self._headers(headers), (b"connection", b"close")])
        self.status = status

    async def deny_body(self, message: Message) -> bool:
        data = b""
        try:
            pending = getattr(self, "_pending", None)
            if pending is not None:
                data += self.conn.send(pending)
                del self._pending
            body = message.get("body", b"")
            if body:
                data += self.conn.send(h11.Data(data=bytes(body)))
            more = bool(message.get("more_body", False))
            if not more:
                data += self.conn.send(h11.EndOfMessage())
        except h11.LocalProtocolError as exc:
            raise AppMistake(f"invalid denial response: {exc}") from None
        await self.write(data)
        return not more

    async def end(self) -> None:
        await self.abort_async()

    def abort(self) -> None:
        self.closed = True

    async def abort_async(self) -> None:
        self.closed = True
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            try:
                await self.stream.aclose()
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass

    async def fail(self, status: int) -> None:
        body = b"Internal Server Error\n" if status == 500 else b"Forbidden\n"
        self.deny_start(
            {
                "status": status,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        try:
            await self.deny_body({"body": body})
        except (ClientDisconnected, AppMistake):
            pass
