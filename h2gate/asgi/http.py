"""ASGI 3 ``http`` scope over one HTTP/2 stream.

The response side is a small state machine (see :class:`_Response`): the
HEADERS frame is held back until the first body chunk so that a whole response
can leave as HEADERS+DATA(END_STREAM), and so that an app that fails between
``http.response.start`` and its first body still gets a clean 500.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote_to_bytes

import trio
from h2.errors import ErrorCodes
from h2.exceptions import ProtocolError

from h2gate.appload import Message, Scope
from h2gate.asgi.push import PushMistake, push, push_enabled
from h2gate.asgi.runner import AppRunner
from h2gate.errors import ClientDisconnected
from h2gate.exchange import Exchange, Headers, RequestHead
from h2gate.filebody import FileBodyError, FileSpan, file_span, stream_file
from h2gate.logs import access_log
from h2gate.response import HeaderError, fail, prepare_headers, simple_response
from h2gate.tls import asgi_tls_extension
from h2gate.transport import Transport

log = logging.getLogger("h2gate.error")

ASGI_VERSION = {"version": "3.0", "spec_version": "2.4"}
#: ASGI HTTP extensions every HTTP/2 stream supports (added to scope["extensions"] by handle_http).
HTTP_EXTENSIONS = (
    "http.response.trailers",
    "http.request.trailers",
    "http.response.early_hint",
    "http.response.pathsend",
    "http.response.zerocopysend",
)


class AppMistake(RuntimeError):
    """The app sent a message that breaks the ASGI spec; the text names the mistake."""


def build_scope(head: RequestHead, transport: Transport, root_path: str, state: dict[str, Any]) -> Scope | None:
    """The ASGI scope for a request, or None when it has no :path (plain CONNECT)."""
    method, scheme, authority, raw = head.method, head.scheme, head.authority, head.target
    if not raw:
        return None
    headers: list[tuple[bytes, bytes]] = []
    cookies: list[bytes] = []
    for name, value in head.fields:
        if name == b"cookie":
            cookies.append(value)
        elif name != b"host" or not authority:
            headers.append((name, value))
    if authority:
        headers = [(b"host", authority), *(h for h in headers if h[0] != b"host")]
    if cookies:
        headers.append((b"cookie", b"; ".join(cookies)))
    raw_path, _, query = raw.partition(b"?")
    path = unquote_to_bytes(raw_path).decode("utf-8", "replace")
    root = root_path
    return {
        "type": "http",
        "asgi": ASGI_VERSION,
        "http_version": "2",
        "method": method.decode("latin-1"),
        "scheme": scheme.decode("latin-1") or transport.scheme,
        # As uvicorn does: path and raw_path always include root_path (the proxy stripped it).
        "path": root + path,
        "raw_path": root.encode() + raw_path,
        "query_string": query,
        "root_path": root,
        "headers": headers,
        "client": transport.peer if transport.peer and transport.peer[1] is not None else None,
        "server": transport.local,
        "state": dict(state),
        "extensions": {"tls": asgi_tls_extension(transport.tls)} if transport.tls is not None else {},
    }


class _Response:
    """Turns ASGI send() messages into HEADERS/DATA on the exchange."""

    def __init__(self, exchange: Exchange, head: bool, server_header: bool) -> None:
        self.exchange = exchange
        self.head = head
        self.server_header = server_header
        self.status = 0
        self.headers: Headers = []
        self.started = False  # http.response.start received
        self.complete = False  # the response is over (final body, or final trailers when announced)
        self.body_done = False  # final body message received
        self.announced_trailers = False  # http.response.start set trailers: True
        self.trailer_block: Headers = []
        self.content_length: int | None = None
        self.body_bytes = 0

    def start(self, message: Message) -> None:
        if self.started:
            raise AppMistake("http.response.start sent twice")
        status = message.get("status")
        if not isinstance(status, int) or isinstance(status, bool) or not 200 <= status <= 599:
            raise AppMistake(f"http.response.start has invalid status {status!r} (an int 200-599 is required)")
        self.headers = self._headers(message.get("headers", []))
        self.status = status
        self.announced_trailers = bool(message.get("trailers", False))
        self.started = True

    def _headers(self, raw: Iterable[Any], trailer: bool = False) -> Headers:
        try:
            items = list(raw)
        except TypeError:
            raise AppMistake("http.response.start headers must be an iterable of [name, value] pairs") from None
        pairs = []
        for item in items:
            try:
                name, value = item
            except (TypeError, ValueError):
                raise AppMistake(f"response header {item!r} is not a [name, value] pair") from None
            if not isinstance(name, bytes) or not isinstance(value, bytes):
                raise AppMistake(f"response header {item!r} must be a pair of byte strings")
            pairs.append((name, value))
        try:
            out, length = prepare_headers(pairs, self.server_header, trailer=trailer)
        except HeaderError as exc:
            raise AppMistake(str(exc)) from None
        if not trailer:
            self.content_length = length
        return out

    async def body(self, message: Message) -> None:
        if not self.started:
            raise AppMistake("http.response.body sent before http.response.start")
        if self.body_done:
            raise AppMistake("http.response.body sent after the response was complete")
        body = message.get("body", b"")
        if not isinstance(body, (bytes, bytearray, memoryview)):
            raise AppMistake(f"http.response.body body must be bytes, not {type(body).__name__}")
        more = bool(message.get("more_body", False))
        self.body_done = not more
        # With trailers announced, the trailer HEADERS (not the last DATA) end the stream.
        self.complete = self.body_done and not self.announced_trailers
        exchange = self.exchange
        if self.head:
            body = b""
        self.body_bytes += len(body)
        if self.content_length is not None and self.body_bytes > self.content_length and not self.head:
            raise AppMistake(f"response body is longer than its content-length ({self.content_length})")
        if (
            self.body_done
            and self.content_length is not None
            and not self.head
            and self.body_bytes < self.content_length
        ):
            raise AppMistake(
                f"response body ended after {self.body_bytes} bytes, "
                f"short of its content-length ({self.content_length})"
            )
        if not exchange.headers_sent:
            self.headers[0] = (b":status", str(self.status).encode())
            exchange.status = self.status
            if not body and (self.complete or self.head):
                await self._send_headers(end_stream=True)
                return
            await self._send_headers(end_stream=False)
        elif self.head:
            return  # HEAD: the headers already ended the stream; later body messages are dropped
        if body or self.complete:
            await exchange.send_data(bytes(body), end_stream=self.complete)

    async def send_trailers(self, message: Message) -> None:
        """``http.response.trailers``: collected until ``more_trailers`` is false, then HEADERS+END_STREAM."""
        if not self.announced_trailers:
            raise AppMistake("http.response.trailers sent but http.response.start did not set trailers: True")
        if not self.body_done:
            raise AppMistake("http.response.trailers sent before the final http.response.body")
        if self.complete:
            raise AppMistake("http.response.trailers sent after the response was complete")
        self.trailer_block += self._headers(message.get("headers", []), trailer=True)
        if message.get("more_trailers", False):
            return
        self.complete = True
        if self.head:
            return  # HEAD: the response already ended with its headers
        if self.trailer_block:
            await self._send_headers(end_stream=True, block=self.trailer_block)
        else:
            await self.exchange.send_data(b"", end_stream=True)

    async def early_hint(self, message: Message) -> None:
        """``http.response.early_hint``: a 103 HEADERS with one ``link`` field per entry."""
        if self.exchange.headers_sent:
            log.debug("stream %d: early hint after the response headers dropped", self.exchange.stream_id)
            return
        links = message.get("links", [])
        block: Headers = [(b":status", b"103")]
        for link in links if isinstance(links, (list, tuple)) else [links]:
            if not isinstance(link, bytes) or not link or any(c in link for c in b"\r\n\0"):
                raise AppMistake(f"http.response.early_hint link {link!r} must be non-empty bytes without CR/LF/NUL")
            block.append((b"link", link))
        if len(block) > 1:
            await self.exchange.send_informational(block)

    async def pathsend(self, message: Message) -> None:
        """``http.response.pathsend``: the file at ``path`` is the whole body, read off the trio thread."""
        self._check_file_body("http.response.pathsend")
        path = message.get("path")
        if not isinstance(path, str) or not os.path.isabs(path):
            raise AppMistake(f"http.response.pathsend path must be an absolute path, not {path!r}")
        try:
            file = await trio.open_file(path, "rb")
        except OSError as exc:
            raise AppMistake(f"http.response.pathsend cannot open {path!r}: {exc}") from None
        async with file:
            try:
                span = await trio.to_thread.run_sync(file_span, file.fileno(), 0)
            except FileBodyError as exc:
                raise AppMistake(f"http.response.pathsend {path!r}: {exc}") from None
            await self._send_span(span, more=False, what="http.response.pathsend")

    async def zerocopysend(self, message: Message) -> None:
        """``http.response.zerocopysend``: ``count`` bytes of the app's open ``file`` from ``offset``.

        Like a body message otherwise (``more_body``, several per response); the app keeps the file
        and closes it. Without ``offset`` the file position moves past the bytes sent, as sendfile's would.
        """
        self._check_file_body("http.response.zerocopysend")
        file, offset = message.get("file"), message.get("offset")
        try:
            span = file_span(file, offset, message.get("count"))
        except FileBodyError as exc:
            raise AppMistake(f"http.response.zerocopysend file: {exc}") from None
        await self._send_span(span, more=bool(message.get("more_body", False)), what="http.response.zerocopysend")
        seek = getattr(file, "seek", None)
        if offset is None and seek is not None:
            seek(span.offset + span.count)

    def _check_file_body(self, kind: str) -> None:
        if not self.started:
            raise AppMistake(f"{kind} sent before http.response.start")
        if self.body_done:
            raise AppMistake(f"{kind} sent after the response body was complete")

    async def _send_span(self, span: FileSpan, *, more: bool, what: str) -> None:
        """A file span as body messages; a whole-body file sets ``content-length`` when the app did not."""
        if self.content_length is None and self.body_bytes == 0 and not self.exchange.headers_sent and not more:
            self.headers.append((b"content-length", str(span.count).encode()))
            self.content_length = span.count
        if self.head:
            await self.body({"body": b"", "more_body": more})
            return

        async def write(data: bytes, last: bool) -> None:
            await self.body({"body": data, "more_body": more or not last})

        try:
            await stream_file(span, write)
        except (FileBodyError, OSError) as exc:
            raise AppMistake(f"{what}: {exc}") from None

    async def _send_headers(self, end_stream: bool, block: Headers | None = None) -> None:
        try:
            await self.exchange.send_headers(
                self.headers if block is None else block, end_stream=end_stream, checked=True
            )
        except ProtocolError as exc:
            # h2 has already moved the stream on: a second HEADERS (the 500) is impossible.
            self.exchange.reset(ErrorCodes.INTERNAL_ERROR)
            raise AppMistake(f"invalid response headers: {exc}") from None


_SENDERS = {
    "http.response.body": "body",
    "http.response.trailers": "send_trailers",
    "http.response.early_hint": "early_hint",
    "http.response.pathsend": "pathsend",
    "http.response.zerocopysend": "zerocopysend",
}


class HTTPCycle:
    """receive()/send() for one request, handed to the app."""

    def __init__(self, exchange: Exchange, scope: Scope, server_header: bool) -> None:
        self.exchange = exchange
        self.response = _Response(exchange, scope["method"] == "HEAD", server_header)
        self._body_done = False  # the final http.request (more_body False) was delivered

    async def receive(self) -> Message:
        exchange = self.exchange
        if not self._body_done and not exchange.disconnected:
            try:
                body = await exchange.read()
            except ClientDisconnected:
                return {"type": "http.disconnect"}
            self._body_done = exchange.request_ended and not exchange.buffered
            return self._request(body)
        await exchange.done.wait()
        return {"type": "http.disconnect"}

    def prefetch(self) -> Message | None:
        """The first ``http.request`` when the whole body (none) has already arrived.

        A bridged (asyncio) app then gets it without a round trip to trio.
        """
        exchange = self.exchange
        if exchange.request_ended and not exchange.buffered and not self._body_done:
            self._body_done = True
            return self._request(b"")
        return None

    def _request(self, body: bytes) -> Message:
        """An ``http.request``; the final one carries the client's trailers (``http.request.trailers``)."""
        message: Message = {"type": "http.request", "body": body, "more_body": not self._body_done}
        if self._body_done and self.exchange.trailers:
            message["trailers"] = list(self.exchange.trailers)
        return message

    def send_local(self, message: Message) -> bool:
        """Handle, wherever the app runs, the messages that need no I/O (``http.response.start``)."""
        if isinstance(message, dict) and message.get("type") == "http.response.start":
            self.response.start(message)
            return True
        return False

    def ends_response(self, message: Message) -> bool:
        """Whether ``message`` is the plain final body, which a bridged app need not wait for."""
        response = self.response
        return (
            isinstance(message, dict)
            and message.get("type") == "http.response.body"
            and not message.get("more_body", False)
            and response.started
            and not response.announced_trailers
            and not response.body_done
        )

    async def send(self, message: Message) -> None:
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "http.response.start":
            self.response.start(message)
        elif kind == "http.response.push":
            try:
                push(self.exchange, message)
            except PushMistake as exc:
                raise AppMistake(str(exc)) from None
        elif kind in _SENDERS:
            if self.exchange.disconnected:
                raise ClientDisconnected(f"stream {self.exchange.stream_id} is closed")
            await getattr(self.response, _SENDERS[kind])(message)
        else:
            raise AppMistake(f"unexpected ASGI message type {kind!r} on an http connection")


async def handle_http(
    exchange: Exchange,
    transport: Transport,
    runner: AppRunner,
    *,
    root_path: str,
    state: dict[str, Any],
    server_header: bool,
) -> None:
    """Run the app for one request; every fault ends as a 500 or an RST_STREAM."""
    started = time.perf_counter()
    scope = build_scope(exchange.head, transport, root_path, state)
    if scope is None:
        await simple_response(exchange, 501, b"CONNECT is not supported by this server\n", server_header)
        return
    for name in HTTP_EXTENSIONS:
        scope["extensions"][name] = {}
    if push_enabled(exchange):
        scope["extensions"]["http.response.push"] = {}
    cycle = HTTPCycle(exchange, scope, server_header)
    response = cycle.response
    frames = None
    if exchange.conn.frame_tap is not None:  # --enable-frame-api
        from h2gate.asgi.frames import FrameAPI

        frames = FrameAPI(exchange, scope, cycle)
    receive, send = (cycle.receive, cycle.send) if frames is None else (frames.receive, frames.send)
    try:
        if runner.bridged:
            first = cycle.prefetch() if frames is None else None  # frame messages come before http.request
            final = cycle.ends_response if frames is None else None
            await runner.call(scope, receive, send, first=first, local_send=cycle.send_local, final=final)
        else:
            await runner.call(scope, receive, send)
        if exchange.disconnected and not response.complete:
            # The client reset the stream (or the connection went): an app that
            # stops after http.disconnect / a failed send() did nothing wrong.
            log.debug("stream %d: client went away during %s %s", exchange.stream_id, scope["method"], scope["path"])
        elif not response.started:
            log.error("%s %s: the app returned without sending a response", scope["method"], scope["path"])
            await simple_response(exchange, 500, b"Internal Server Error\n", server_header)
        elif not response.complete:
            log.error("%s %s: the app returned before finishing the response body", scope["method"], scope["path"])
            exchange.reset(ErrorCodes.INTERNAL_ERROR)
    except ClientDisconnected:
        log.debug("stream %d: client went away during %s %s", exchange.stream_id, scope["method"], scope["path"])
    except OSError as exc:
        if not exchange.disconnected:
            log.exception("%s %s: exception in the app", scope["method"], scope["path"])
            await fail(exchange, server_header)
        else:  # the app gave up on a client that went away (e.g. raised on http.disconnect)
            what = f"{scope['method']} {scope['path']}"
            log.debug("stream %d: %s ended as its client went away: %r", exchange.stream_id, what, exc)
    except AppMistake as exc:
        log.error("%s %s: ASGI error in the app: %s", scope["method"], scope["path"], exc)
        await fail(exchange, server_header)
    except Exception:
        log.exception("%s %s: exception in the app", scope["method"], scope["path"])
        await fail(exchange, server_header)
    except (SystemExit, KeyboardInterrupt) as exc:  # one request's app must not stop the server
        what = f"{scope['method']} {scope['path']}"
        log.error("%s: the app raised %r; answered 500, the server keeps running", what, exc)
        await fail(exchange, server_header)
    finally:
        if frames is not None:
            frames.finish()
        access_log(transport, scope, exchange, time.perf_counter() - started)
