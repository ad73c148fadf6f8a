"""ASGI 3 ``http`` scope over one HTTP/2 stream.

The scope, ``receive()``/``send()`` (:class:`HTTPCycle`) and the fault handling
around one app call; the response state machine is
:class:`h2gate.asgi.http_response.HTTPResponse`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote_to_bytes

from h2gate.asgi.frames import FrameAPI, FrameTap
from h2gate.asgi.http_response import HTTPResponse
from h2gate.asgi.push import PushMistake, push, push_enabled
from h2gate.asgi.runner import AppRunner, loop_hint
from h2gate.asgi.types import Message, Scope
from h2gate.errors import AppMistake, ClientDisconnected, ErrorCode, StreamStateError
from h2gate.http.head import RequestHead
from h2gate.net.transport import Transport
from h2gate.observe.logs import access_log
from h2gate.protocol.replies import fail, simple_response
from h2gate.protocol.stream import Stream
from h2gate.tls.context import asgi_tls_extension

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


def build_scope(head: RequestHead, transport: Transport, root_path: str, state: dict[str, Any]) -> Scope | None:
    """The ASGI scope for a request, or None when it has no :path (plain CONNECT)."""
    method, scheme, authority, raw = head.method, head.scheme, head.authority, head.target
    if not raw:
        return None
    # :authority becomes the host field, first; a host field beside it is dropped (validate made sure they agree).
    headers: list[tuple[bytes, bytes]] = [(b"host", authority)] if authority else []
    cookies: list[bytes] = []
    for field in head.fields:
        name = field[0]
        if name == b"cookie":
            cookies.append(field[1])
        elif name != b"host" or not authority:
            headers.append(field)
    if cookies:
        headers.append((b"cookie", b"; ".join(cookies)))
    raw_path, _, query = raw.partition(b"?")
    path = (unquote_to_bytes(raw_path) if b"%" in raw_path else raw_path).decode("utf-8", "replace")
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


_SENDERS: dict[str, Callable[[HTTPResponse, Message], Awaitable[None]]] = {
    "http.response.body": HTTPResponse.body,
    "http.response.trailers": HTTPResponse.send_trailers,
    "http.response.early_hint": HTTPResponse.early_hint,
    "http.response.pathsend": HTTPResponse.pathsend,
    "http.response.zerocopysend": HTTPResponse.zerocopysend,
}


class HTTPCycle(HTTPResponse):
    """receive()/send() for one request, handed to the app: the response state machine plus the request side.

    One object per request: it is its own :class:`HTTPResponse` (``response``
    is kept as a name for it), so a send() goes to the response code directly.
    """

    def __init__(self, exchange: Stream, scope: Scope, server_header: bool) -> None:
        super().__init__(exchange, scope["method"] == "HEAD", server_header)
        self._body_done = False  # the final http.request (more_body False) was delivered

    @property
    def response(self) -> HTTPResponse:
        return self

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

    def send_local(self, message: Message, on_room: Callable[[], object] | None = None) -> bool | None:
        """Handle at once, wherever the app runs, a message that needs no waiting.

        That is ``http.response.start``, and a body message that can be queued
        without waiting for window or writer (the first one with the HEADERS). The caller makes sure no
        earlier message is still on its way. None: a body chunk that only
        waits for the writer to drain; try again once ``on_room`` was called.
        """
        if not isinstance(message, dict):
            return False
        kind = message.get("type")
        if kind == "http.response.start":
            self.start(message)
            return True
        if kind == "http.response.body":
            return self.body_nowait(message, on_room)
        return False

    def start_local(self, message: Message, on_room: Callable[[], object] | None = None) -> bool:
        """Handle ``http.response.start`` at once (it only records the status and headers)."""
        if isinstance(message, dict) and message.get("type") == "http.response.start":
            self.start(message)
            return True
        return False

    def ends_response(self, message: Message) -> bool:
        """Whether ``message`` is the plain final body, which a bridged app need not wait for."""
        return (
            isinstance(message, dict)
            and message.get("type") == "http.response.body"
            and not message.get("more_body", False)
            and self.started
            and not self.announced_trailers
            and not self.body_done
        )

    async def send(self, message: Message) -> None:
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "http.response.body" and self.body_nowait(message):
            return  # queued at once: no coroutine for body() (which would do the same)
        if kind == "http.response.start":
            self.start(message)
        elif kind == "http.response.push":
            try:
                push(self.exchange, message)
            except PushMistake as exc:
                raise AppMistake(str(exc)) from None
        elif kind in _SENDERS:
            if self.exchange.disconnected:
                raise ClientDisconnected(f"stream {self.exchange.stream_id} is closed")
            await _SENDERS[kind](self, message)
        else:
            raise AppMistake(f"unexpected ASGI message type {kind!r} on an http connection")


async def handle_http(
    exchange: Stream,
    transport: Transport,
    runner: AppRunner,
    *,
    root_path: str,
    state: dict[str, Any],
    server_header: bool,
    frame_tap: FrameTap | None = None,
) -> None:
    """Run the app for one request; every fault ends as a 500 or an RST_STREAM.

    ``frame_tap``: the connection's frame recorder under --enable-frame-api.
    """
    started = time.perf_counter()
    scope = build_scope(exchange.head, transport, root_path, state)
    if scope is None:
        await simple_response(exchange, 501, b"CONNECT is not supported by this server\n", server_header)
        return
    for name in HTTP_EXTENSIONS:
        scope["extensions"][name] = {}
    if push_enabled(exchange):
        scope["extensions"]["http.response.push"] = {}
    cycle = response = HTTPCycle(exchange, scope, server_header)
    frames = None
    if frame_tap is not None:  # --enable-frame-api
        frames = FrameAPI(exchange, scope, cycle, frame_tap)
    receive, send = (cycle.receive, cycle.send) if frames is None else (frames.receive, frames.send)
    try:
        if runner.bridged:
            first = cycle.prefetch() if frames is None else None  # frame messages come before http.request
            final = cycle.ends_response if frames is None else None
            local = cycle.send_local if frames is None else cycle.start_local  # the frame API sees every body
            await runner.call(scope, receive, send, first=first, local_send=local, final=final)
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
            exchange.reset(ErrorCode.INTERNAL_ERROR)
    except ClientDisconnected:
        log.debug("stream %d: client went away during %s %s", exchange.stream_id, scope["method"], scope["path"])
    except OSError as exc:
        if not exchange.disconnected:
            log.exception("%s %s: exception in the app", scope["method"], scope["path"])
            await fail(exchange, server_header)
        else:  # the app gave up on a client that went away (e.g. raised on http.disconnect)
            what = f"{scope['method']} {scope['path']}"
            log.debug("stream %d: %s ended as its client went away: %r", exchange.stream_id, what, exc)
    except StreamStateError:
        log.exception("%s %s: internal error (h2gate's stream bookkeeping)", scope["method"], scope["path"])
        await fail(exchange, server_header)
    except AppMistake as exc:
        log.error("%s %s: ASGI error in the app: %s", scope["method"], scope["path"], exc)
        await fail(exchange, server_header)
    except Exception as exc:
        log.exception("%s %s: exception in the app%s", scope["method"], scope["path"], loop_hint(runner, exc))
        await fail(exchange, server_header)
    except (SystemExit, KeyboardInterrupt) as exc:  # one request's app must not stop the server
        what = f"{scope['method']} {scope['path']}"
        log.error("%s: the app raised %r; answered 500, the server keeps running", what, exc)
        await fail(exchange, server_header)
    finally:
        if frames is not None:
            frames.finish()
        access_log(transport, scope, exchange, time.perf_counter() - started)
