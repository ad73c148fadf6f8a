"""The response side of an ASGI ``http`` exchange: a small state machine over send() messages.

The HEADERS frame is held back until the first body chunk so that a whole
response can leave as HEADERS+DATA(END_STREAM), and so that an app that fails
between ``http.response.start`` and its first body still gets a clean 500.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from typing import Any

import trio

from h2gate.asgi.types import Message
from h2gate.compiled import caused
from h2gate.errors import AppMistake
from h2gate.http.head import Headers
from h2gate.protocol.filebody import FileBodyError, FileSpan, file_span, stream_file
from h2gate.protocol.replies import HeaderError, prepare_headers
from h2gate.protocol.stream import Stream

log = logging.getLogger("h2gate.error")


def byte_pairs(items: Iterable[Any], what: str) -> Headers:
    """The app's header items as (name, value) byte pairs; AppMistake names the first that is not one."""
    pairs = []
    for item in items:
        try:
            name, value = item
        except (TypeError, ValueError):
            raise caused(AppMistake(f"{what} {item!r} is not a [name, value] pair"), None)
        if not isinstance(name, bytes) or not isinstance(value, bytes):
            raise AppMistake(f"{what} {item!r} must be a pair of byte strings")
        pairs.append((name, value))
    return pairs


#: ``str(status).encode()`` for every status start() accepts, looked up rather than made per response.
_STATUS_BYTES = {code: str(code).encode() for code in range(200, 600)}


class HTTPResponse:
    """Turns ASGI send() messages into HEADERS/DATA on the exchange."""

    # Slots: one of these (an HTTPCycle) is made per request.
    __slots__ = (
        "announced_trailers", "body_bytes", "body_done", "complete", "content_length", "exchange", "head",
        "headers", "server_header", "started", "status", "trailer_block",
    )  # fmt: skip

    def __init__(self, exchange: Stream, head: bool, server_header: bool) -> None:
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
            raise caused(AppMistake("http.response.start headers must be an iterable of [name, value] pairs"), None)
        try:
            out, length = prepare_headers(items, self.server_header, trailer=trailer)
        except HeaderError as exc:
            raise caused(AppMistake(str(exc)), None)
        if not trailer:
            self.content_length = length
        return out

    async def body(self, message: Message) -> None:
        if self.body_nowait(message):
            return
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
            self.headers[0] = (b":status", _STATUS_BYTES.get(self.status) or str(self.status).encode())
            if not body and (self.complete or self.head):
                await self._send_headers(end_stream=True)
                return
            await self._send_headers(end_stream=False)
        elif self.head:
            return  # HEAD: the headers already ended the stream; later body messages are dropped
        if body or self.complete:
            await exchange.send_data(bytes(body), end_stream=self.complete)

    def body_nowait(self, message: Message, on_room: Callable[[], object] | None = None) -> bool | None:
        """Queue a body message now if nothing has to wait for it; the common response never waits.

        The first body message goes out with the response's HEADERS
        (Stream.respond_nowait), a middle chunk of a streamed body alone
        (Stream.send_data_nowait). Anything else (HEAD, a mistake to report,
        trailers announced and due, a full window or writer) returns False and
        goes through :meth:`body`; None means: try again once ``on_room`` was called.
        """
        body = message.get("body", b"")
        if not self.started or self.body_done or self.head or type(body) is not bytes:
            return False
        more = bool(message.get("more_body", False))
        size = len(body)
        length = self.content_length
        exchange = self.exchange
        if not exchange.headers_sent:
            if length is not None and (size > length or (not more and size < length)):
                return False  # body() reports the mismatch
            complete = not more and not self.announced_trailers
            self.headers[0] = (b":status", _STATUS_BYTES.get(self.status) or str(self.status).encode())
            if not exchange.respond_nowait(self.headers, body, end_stream=complete):
                return False
            self.body_done, self.complete = not more, complete
            self.body_bytes += size
            return True
        if not more or not body or (length is not None and self.body_bytes + size > length):
            return False
        queued = exchange.send_data_nowait(body, on_room)
        if queued:
            self.body_bytes += size
        return queued

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
            await self.exchange.send_trailers(self.trailer_block)
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
            raise caused(AppMistake(f"http.response.pathsend cannot open {path!r}: {exc}"), None)
        async with file:
            try:
                span = await trio.to_thread.run_sync(file_span, file.fileno(), 0)
            except FileBodyError as exc:
                raise caused(AppMistake(f"http.response.pathsend {path!r}: {exc}"), None)
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
            raise caused(AppMistake(f"http.response.zerocopysend file: {exc}"), None)
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
            raise caused(AppMistake(f"{what}: {exc}"), None)

    async def _send_headers(self, end_stream: bool) -> None:
        await self.exchange.send_headers(self.headers, end_stream=end_stream)
