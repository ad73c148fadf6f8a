"""``start_response``, ``write()`` and the body loop: the WSGI response, run in the app's thread.

The HEADERS frame waits for the first non-empty body chunk (or the end of an
empty body), so ``start_response`` can still be replaced with ``exc_info``
until then, and a small response leaves as HEADERS + DATA(END_STREAM).
The first chunk (with the HEADERS) is handed to the trio side with
:func:`~h2gate.wsgi.bridge.to_trio`, which returns once the bytes fit in the
client's flow-control windows; the middle ones with ``to_trio_behind``, which
lets the app's thread go on until ``BEHIND_BYTES`` (256 KiB) are handed over
but not yet taken (:mod:`h2gate.wsgi.pool`). Either way a fast app talking to
a slow client is blocked in ``write()`` or its body iteration, with a bounded
amount of its body held by the server. The last piece (with END_STREAM) is
kept in ``rest`` and sent by the stream's trio task once the app's thread has
returned, so a small response costs one thread round trip, not two.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable
from typing import Any

from h2gate.errors import AppMistake, ClientDisconnected, ErrorCode
from h2gate.http.head import Headers
from h2gate.protocol.filebody import FileBodyError, FileSpan, stream_file
from h2gate.protocol.replies import HeaderError, prepare_headers
from h2gate.protocol.stream import Stream
from h2gate.wsgi.bridge import to_trio, to_trio_behind
from h2gate.wsgi.filewrapper import FileWrapper

_STATUS = re.compile(r"([0-9]{3})(?: [^\r\n\0]*)?")


class TrailerMistake(AppMistake):
    """A field given to ``wsgi.ext.http.send_trailers`` cannot go on the wire: the stream is reset."""


def parse_status(status: Any) -> int:
    if not isinstance(status, str):
        raise AppMistake(f"start_response() status must be a str like '200 OK', not {type(status).__name__}")
    m = _STATUS.fullmatch(status)
    if m is None or not 200 <= int(m.group(1)) <= 599:
        raise AppMistake(f"start_response() status {status!r} is not a '<code 200-599> <reason>' string")
    return int(m.group(1))


def encode_headers(headers: Any, what: str = "start_response() headers") -> list[tuple[bytes, bytes]]:
    if not isinstance(headers, list):
        kind = type(headers).__name__
        raise AppMistake(f"{what} must be a list of (name, value) tuples, not {kind}")
    pairs = []
    for item in headers:
        if not isinstance(item, tuple) or len(item) != 2:
            raise AppMistake(f"{what}: {item!r} is not a (name, value) tuple")
        name, value = item
        if type(name) is not str or type(value) is not str:
            raise AppMistake(f"{what}: {item!r} must be a pair of str (PEP 3333 native strings)")
        try:
            pairs.append((name.encode("latin-1"), value.encode("latin-1")))
        except UnicodeEncodeError:
            raise AppMistake(f"{what}: {item!r} is not latin-1 encodable") from None
    return pairs


class WSGICall:
    """One app call: the callables the app gets, and the loop that sends what it returns."""

    def __init__(self, exchange: Stream, head: bool, server_header: bool) -> None:
        self.exchange = exchange
        self.head = head
        self.server_header = server_header
        self.status = 0
        self.headers: Headers | None = None  # set by start_response
        self.content_length: int | None = None  # what the app declared
        self.headers_sent = False
        self.finished = False
        self.body_bytes = 0
        #: The response's last piece (headers, data, END_STREAM), left for :meth:`send_rest` to send
        #: from the trio side after the thread returns: one thread round trip fewer per request.
        self.rest: tuple[Headers | None, bytes, bool] | None = None
        #: Trailer fields given so far by send_trailers (checked), sent once the body is complete.
        self.trailers: Headers = []
        self.trailers_given = False
        self.auto_length = False  # the server added content-length (the body's size was known)
        #: END_STREAM is on its way: trailers given from now on are too late.
        self.sealed = False
        #: A bad trailer: the stream is reset and the handler logs this, whatever the app does next.
        self.mistake: TrailerMistake | None = None

    # -- the callables the app gets ------------------------------------------------------

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[..., None]:
        if exc_info is not None:
            try:
                if self.headers_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.headers is not None:
            raise AppMistake("start_response() called a second time without exc_info")
        code = parse_status(status)
        try:
            block, length = prepare_headers(encode_headers(headers), self.server_header)
        except HeaderError as exc:
            raise AppMistake(str(exc)) from None
        self.status, self.headers, self.content_length = code, block, length
        return self.write

    def write(self, data: bytes) -> None:
        if self.headers is None:
            raise AppMistake("write() called before start_response()")
        self._send(data, end=False)

    def send_trailers(self, trailers: list[tuple[str, str]]) -> None:
        """``environ["wsgi.ext.http.send_trailers"]``: fields for the trailer section ending the response.

        Takes a list of ``(name, value)`` str pairs, checked at once like
        ASGI trailers. May be called any time before the app's call is over
        (start_response, its body and ``close()`` included); fields from
        several calls are sent together, after the last body chunk. A bad
        field raises TrailerMistake and resets the stream; so does a call
        after the response has ended.
        """
        try:
            if self.sealed:
                raise AppMistake("called after the response was complete")
            block, _ = prepare_headers(encode_headers(trailers, "trailers"), False, trailer=True)
        except (AppMistake, HeaderError) as exc:
            mistake = TrailerMistake(f"wsgi.ext.http.send_trailers(): {exc}")
            if self.mistake is None:
                self.mistake = mistake
                if not self.sealed:
                    with contextlib.suppress(ClientDisconnected):
                        to_trio(self._reset)  # the client learns now; the app's next read or write fails
            raise mistake from None
        self.trailers_given = True
        self.trailers += block

    async def _reset(self) -> None:
        self.exchange.reset(ErrorCode.INTERNAL_ERROR)

    # -- the body loop ---------------------------------------------------------------------

    def run(self, app: Any, environ: dict[str, Any]) -> None:
        """Call the app and send its response; ``close()`` on the result is always called."""
        if self.exchange.disconnected:
            raise ClientDisconnected(f"stream {self.exchange.stream_id} was reset before the app started")
        result = app(environ, self.start_response)
        try:
            self._send_result(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()

    def _send_result(self, result: Iterable[bytes]) -> None:
        if isinstance(result, (bytes, str)):
            raise AppMistake(f"the app returned a {type(result).__name__}, not an iterable of bytes")
        if isinstance(result, (list, tuple)) and all(isinstance(c, bytes) for c in result):
            # Known length: content-length can be set and END_STREAM rides on the last chunk.
            total = sum(len(c) for c in result)
            last = len(result) - 1
            for i, chunk in enumerate(result):
                self._send(chunk, end=i == last, total=total)
                if self.finished:
                    return
            self._finish(total)
            return
        known: int | None = None
        if isinstance(result, FileWrapper):
            span = result.span()
            if span is not None and self._send_file(span):
                return
            known = span.count if span is not None else None
        for chunk in result:
            self._send(chunk, end=False, total=known)
            if self.finished:
                return  # HEAD: the body is not needed
        self._finish(known)

    def _finish(self, total: int | None) -> None:
        if self.finished:
            return
        if self.headers is None:
            raise AppMistake("the app returned without calling start_response()")
        self._send(b"", end=True, total=self.body_bytes if total is None else total)

    def _send(self, data: Any, *, end: bool, total: int | None = None) -> None:
        if not isinstance(data, bytes):
            raise AppMistake(f"the app gave the server a {type(data).__name__}; response bodies must be bytes")
        if self.finished:
            if data:
                raise AppMistake("the app sent body bytes after the response was complete")
            return
        if self.headers is None:
            raise AppMistake("the app returned a body before calling start_response()")
        headers: Headers | None = None
        if not self.headers_sent:
            if not data and not end:
                return  # an empty chunk must not commit the headers (PEP 3333)
            headers = self._commit_headers(total)
        if self.head:
            self.finished = True
            if headers is not None:
                self.rest = (headers, b"", True)
            return
        self.body_bytes += len(data)
        declared = self.content_length
        if declared is not None and self.body_bytes > declared:
            raise AppMistake(f"response body is longer than its content-length ({declared})")
        if end and declared is not None and self.body_bytes < declared:
            raise AppMistake(
                f"response body ended after {self.body_bytes} bytes, short of its content-length ({declared})"
            )
        if end:
            self.finished = True
            self.rest = (headers, data, end)
        elif headers is not None:  # the first chunk: header mistakes are raised here, to the app
            to_trio(self._emit, headers, data, end)
        elif data:  # a middle chunk: the thread goes on while it is queued
            to_trio_behind(self._emit, None, data, False, size=len(data))

    async def send_rest(self) -> None:
        """In the trio thread, once the app's thread is done: the response's last piece, if any.

        With trailers given (and not a HEAD response), the last DATA leaves
        without END_STREAM and the trailer HEADERS end the stream.
        """
        rest, self.rest = self.rest, None
        if rest is None:
            return
        self.sealed = True
        headers, data, end = rest
        if not (end and self.trailers and not self.head):
            await self._emit(headers, data, end)
            return
        if headers is not None and self.auto_length:
            # Trailers came after the length was worked out: a proxy that ends the response at
            # content-length (nginx's grpc_pass does) would drop them, so the length goes.
            headers[:] = [field for field in headers if field[0] != b"content-length"]
        await self._emit(headers, data, False)
        await self.exchange.send_trailers(self.trailers)

    def _commit_headers(self, total: int | None) -> Headers:
        """The final response headers, with ``content-length`` when the body's size is known."""
        assert self.headers is not None
        headers = self.headers
        headers[0] = (b":status", str(self.status).encode())
        if self.content_length is None and total is not None and not self.head and not self.trailers_given:
            headers.append((b"content-length", str(total).encode()))
            self.content_length = total
            self.auto_length = True
        self.headers_sent = True
        return headers

    def _send_file(self, span: FileSpan) -> bool:
        """A wrapped regular file as the whole body, streamed from the trio side; False to iterate it instead.

        Iterating is left for what it handles best: no start_response yet (the
        error is raised there), bytes already written, a declared length that
        differs from the file's (so the usual length errors apply).
        """
        if self.headers is None or self.headers_sent or self.body_bytes or self.trailers_given:
            return False  # (with trailers the body's last DATA must not end the stream)
        if self.content_length is not None and self.content_length != span.count and not self.head:
            return False
        if self.head and self.content_length is None:  # the size a GET would get, as for ASGI's pathsend
            self.headers.append((b"content-length", str(span.count).encode()))
            self.content_length = span.count
        headers = self._commit_headers(span.count)
        self.finished = self.sealed = True
        if self.head:
            to_trio(self._emit, headers, b"", True)
            return True
        self.body_bytes = span.count
        to_trio(self._emit_file, headers, span)
        return True

    async def _emit_file(self, headers: Headers, span: FileSpan) -> None:
        """In the trio thread: the headers, then the file in chunks (see :mod:`h2gate.protocol.filebody`)."""

        async def write(data: bytes, last: bool) -> None:
            await self.exchange.send_data(data, end_stream=last)

        await self._emit(headers, b"", span.count == 0)
        if span.count:
            try:
                await stream_file(span, write)
            except (FileBodyError, OSError) as exc:
                self.exchange.reset(ErrorCode.INTERNAL_ERROR)
                raise AppMistake(f"wsgi.file_wrapper: {exc}") from None

    async def _emit(self, headers: Headers | None, data: bytes, end: bool) -> None:
        """In the trio thread: put the headers and/or data on the stream, waiting for window."""
        exchange = self.exchange
        if headers is not None:
            await exchange.send_headers(headers, end_stream=end and not data)
            if end and not data:
                return
        await exchange.send_data(data, end_stream=end)
