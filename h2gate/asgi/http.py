"""ASGI 3 ``http`` scope over one HTTP/2 stream.

The scope, ``receive()``/``send()`` (:class:`HTTPCycle`) and the fault handling
around one app call; the response state machine is
:class:`h2gate.asgi.http_response.HTTPResponse`.

A request for an app on the hosted asyncio loop starts without a trio task
(:func:`serve_http`, :class:`OffTaskCall`): the app's task runs it, a
response that needs no waiting leaves from its ``send()``, and the access
line is written and the stream ended from the app task's last step. The
first thing that has to wait in trio (a body to read, a full window or
writer, a final message left to send, a fault to answer, the core cancelling
the app after a reset or at ``--graceful-timeout``) moves the rest of the
call into a trio task of the connection, with a real cancel scope, where it
ends as :func:`handle_http` would.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol
from urllib.parse import unquote_to_bytes

import trio

from h2gate.asgi.bridge import Bridge
from h2gate.asgi.frames import FrameAPI, FrameTap
from h2gate.asgi.http_response import HTTPResponse
from h2gate.asgi.push import PushMistake, push, push_enabled
from h2gate.asgi.runner import AppRunner, AsyncioRunner, loop_hint
from h2gate.asgi.types import Message, Scope
from h2gate.compiled import caused
from h2gate.errors import AppMistake, ClientDisconnected, ErrorCode, StreamStateError
from h2gate.http.head import RequestHead
from h2gate.net.transport import Transport
from h2gate.observe.logs import access_log
from h2gate.protocol.replies import fail, simple_response
from h2gate.protocol.stream import Stream
from h2gate.tls.info import TLSInfo, asgi_tls_extension

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


def build_scope(
    head: RequestHead, transport: Transport, root_path: str, state: dict[str, Any], http: Stream | None = None
) -> Scope | None:
    """The ASGI scope for a request, or None when it has no :path (plain CONNECT).

    With ``http`` (the request's stream) the scope is an ``http`` one and its
    extensions are made in the same step: :data:`HTTP_EXTENSIONS`, and
    ``http.response.push`` when the client takes pushes.
    """
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
    # (0x25 is "%": an int needle is a memchr; a bytes one first fails as an int, a TypeError made and cleared)
    path = (unquote_to_bytes(raw_path) if 0x25 in raw_path else raw_path).decode("utf-8", "replace")
    root = root_path
    peer = transport.peer
    tls: TLSInfo | None = transport.tls
    return {
        "type": "http",
        "asgi": ASGI_VERSION,
        "http_version": "2",
        "method": method.decode("latin-1"),
        "scheme": scheme.decode("latin-1") or transport.scheme,
        # As uvicorn does: path and raw_path always include root_path (the proxy stripped it).
        "path": root + path if root else path,
        "raw_path": root.encode() + raw_path if root else raw_path,
        "query_string": query,
        "root_path": root,
        "headers": headers,
        "client": peer if peer and peer[1] is not None else None,
        "server": transport.local,
        "state": dict(state),
        "extensions": _http_extensions(tls, http) if http is not None else _extensions(tls),
    }


def _extensions(tls: TLSInfo | None) -> dict[str, Any]:
    """``scope["extensions"]`` of every scope: ``tls`` when the request came over TLS."""
    return {"tls": _tls_extension(tls)} if tls is not None else {}


def _http_extensions(tls: TLSInfo | None, exchange: Stream) -> dict[str, Any]:
    """``scope["extensions"]`` of an ``http`` scope: ``tls`` when it came over TLS, then HTTP_EXTENSIONS (one
    new dict each, written out: no loop, once per request), then ``http.response.push`` if the client takes them."""
    extensions = _extensions(tls)
    extensions["http.response.trailers"] = {}
    extensions["http.request.trailers"] = {}
    extensions["http.response.early_hint"] = {}
    extensions["http.response.pathsend"] = {}
    extensions["http.response.zerocopysend"] = {}
    if push_enabled(exchange):
        extensions["http.response.push"] = {}
    return extensions


#: The ASGI ``tls`` extension of recent connections' handshakes: id(info) -> (info, extension). A connection's
#: requests share one handshake, so the extension is made once and each request gets a copy.
_tls_extensions: dict[int, tuple[TLSInfo, dict[str, Any]]] = {}
_TLS_EXTENSIONS_MAX = 256


def _tls_extension(info: TLSInfo) -> dict[str, Any]:
    """``asgi_tls_extension(info)``: a new dict and list for each request, made from one kept per handshake."""
    kept = _tls_extensions.get(id(info))
    if kept is None or kept[0] is not info:
        if len(_tls_extensions) >= _TLS_EXTENSIONS_MAX:
            _tls_extensions.clear()  # (bounded: a flood of one-request connections never grows it)
        kept = _tls_extensions[id(info)] = (info, asgi_tls_extension(info))
    extension = kept[1].copy()
    extension["client_cert_chain"] = list(extension["client_cert_chain"])
    return extension


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

    __slots__ = ("_body_done",)

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
                raise caused(AppMistake(str(exc)), None)
        elif kind in _SENDERS:
            if self.exchange.disconnected:
                raise ClientDisconnected(f"stream {self.exchange.stream_id} is closed")
            await _SENDERS[kind](self, message)
        else:
            raise AppMistake(f"unexpected ASGI message type {kind!r} on an http connection")


class StreamHost(Protocol):
    """The connection's side of a stream served without a task of its own (h2gate.protocol.driver)."""

    def start_task(self, stream: Stream, work: Awaitable[None]) -> None: ...
    def stream_done(self, stream: Stream) -> None: ...


def serve_http(
    exchange: Stream,
    transport: Transport,
    runner: AppRunner,
    host: StreamHost,
    *,
    root_path: str,
    state: dict[str, Any],
    server_header: bool,
    frame_tap: FrameTap | None = None,
) -> Awaitable[None] | None:
    """Serve one request: :func:`handle_http`'s coroutine for the stream's task to await, or None when the
    app was started on the hosted asyncio loop without one (:class:`OffTaskCall`)."""
    if not isinstance(runner, AsyncioRunner) or frame_tap is not None or not exchange.head.target:
        return handle_http(
            exchange, transport, runner, root_path=root_path, state=state, server_header=server_header,
            frame_tap=frame_tap,
        )  # fmt: skip
    started = time.perf_counter()
    scope = build_scope(exchange.head, transport, root_path, state, exchange)
    assert scope is not None  # it has a :path
    OffTaskCall(exchange, transport, runner, host, scope, server_header, started)
    return None


class OffTaskCall(HTTPCycle):
    """One request on the hosted asyncio loop while no trio task serves it (see the module docstring).

    It is the request's :class:`HTTPCycle` itself (one object a request, not a
    cycle and a call forwarding to it), the bridge's :class:`~h2gate.asgi.bridge.Owner`,
    and the stream's :class:`~h2gate.protocol.stream_offtask.AppScope` meanwhile:
    a deadline or a cancel from the core moves the call into a trio task whose
    real cancel scope gets it.
    """

    __slots__ = ("bridge", "host", "runner", "scope", "since", "transport")  # since: perf_counter at the start

    def __init__(
        self,
        exchange: Stream,
        transport: Transport,
        runner: AsyncioRunner,
        host: StreamHost,
        scope: Scope,
        server_header: bool,
        started: float,
    ) -> None:
        super().__init__(exchange, scope, server_header)
        self.transport, self.runner, self.host, self.scope, self.since = transport, runner, host, scope, started
        exchange.scope = self
        self.bridge: Bridge | None = None
        self.bridge = runner.start(
            scope, self.receive, self.send, first=self.prefetch(), local_send=self.send_local,
            final=self.ends_response, owner=self,
        )  # fmt: skip

    # AppScope: the core's cancels, while no trio task serves the call --------------------------------

    @property
    def deadline(self) -> float:
        return math.inf

    @deadline.setter
    def deadline(self, value: float) -> None:
        self._to_trio().deadline = value

    def cancel(self) -> None:
        self._to_trio().cancel()

    def _to_trio(self) -> trio.CancelScope:
        bridge = self.bridge
        assert bridge is not None
        bridge.attach()  # calls need_trio, which gives the stream a trio scope
        scope = self.exchange.scope
        assert isinstance(scope, trio.CancelScope)
        return scope

    # Owner: what the bridge tells us -------------------------------------------------------------------

    def need_trio(self) -> None:
        self._start_task(self._serve())

    def app_done(self, outcome: BaseException | None) -> None:
        if outcome is not None or not self.complete:
            self._start_task(self._conclude(outcome))
            return
        exchange = self.exchange  # the common case: answered, nothing left but the access line
        exchange.scope = None  # (which referred to this call: no cycle left for the collector)
        bridge, self.bridge = self.bridge, None
        if bridge is not None:
            bridge.release()
        try:
            access_log(self.transport, self.scope, exchange, time.perf_counter() - self.since)
        finally:
            self.host.stream_done(exchange)

    # the trio task ------------------------------------------------------------------------------------

    def _start_task(self, work: Awaitable[None]) -> None:
        exchange = self.exchange
        exchange.scope = trio.CancelScope()
        self.host.start_task(exchange, work)

    async def _serve(self) -> None:
        bridge = self.bridge
        assert bridge is not None
        try:
            outcome = await bridge.serve()
        except BaseException:  # cancelled: the app's task is cancelled too
            access_log(self.transport, self.scope, self.exchange, time.perf_counter() - self.since)
            raise
        await self._conclude(outcome)

    async def _conclude(self, outcome: BaseException | None) -> None:
        bridge, self.bridge = self.bridge, None
        if bridge is not None:
            bridge.release()
        await conclude(self, self.scope, self.transport, self.runner, outcome, None, self.since)


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
    """Run the app for one request in this trio task; every fault ends as a 500 or an RST_STREAM.

    ``frame_tap``: the connection's frame recorder under --enable-frame-api.
    """
    started = time.perf_counter()
    scope = build_scope(exchange.head, transport, root_path, state, exchange)
    if scope is None:
        await simple_response(exchange, 501, b"CONNECT is not supported by this server\n", server_header)
        return
    cycle = HTTPCycle(exchange, scope, server_header)
    frames = None
    if frame_tap is not None:  # --enable-frame-api
        frames = FrameAPI(exchange, scope, cycle, frame_tap)
    receive, send = (cycle.receive, cycle.send) if frames is None else (frames.receive, frames.send)
    outcome: BaseException | None = None
    try:
        if runner.bridged:
            first = cycle.prefetch() if frames is None else None  # frame messages come before http.request
            final = cycle.ends_response if frames is None else None
            local = cycle.send_local if frames is None else cycle.start_local  # the frame API sees every body
            await runner.call(scope, receive, send, first=first, local_send=local, final=final)
        else:
            await runner.call(scope, receive, send)
    except (Exception, SystemExit, KeyboardInterrupt) as exc:
        outcome = exc
    except BaseException:  # cancelled (a reset's grace or --graceful-timeout ran out)
        if frames is not None:
            frames.finish()
        access_log(transport, scope, exchange, time.perf_counter() - started)
        raise
    await conclude(cycle, scope, transport, runner, outcome, frames, started)


async def conclude(
    cycle: HTTPCycle,
    scope: Scope,
    transport: Transport,
    runner: AppRunner,
    outcome: BaseException | None,
    frames: FrameAPI | None,
    started: float,
) -> None:
    """After the app returned or raised ``outcome``: the log line and the 500 or RST a fault needs, the access line."""
    response, exchange = cycle, cycle.exchange
    try:
        if outcome is not None:
            raise outcome
        if exchange.disconnected and not response.complete:
            # The client reset the stream (or the connection went): an app that
            # stops after http.disconnect / a failed send() did nothing wrong.
            log.debug("stream %d: client went away during %s %s", exchange.stream_id, scope["method"], scope["path"])
        elif not response.started:
            log.error("%s %s: the app returned without sending a response", scope["method"], scope["path"])
            await simple_response(exchange, 500, b"Internal Server Error\n", cycle.server_header)
        elif not response.complete:
            log.error("%s %s: the app returned before finishing the response body", scope["method"], scope["path"])
            exchange.reset(ErrorCode.INTERNAL_ERROR)
    except ClientDisconnected:
        log.debug("stream %d: client went away during %s %s", exchange.stream_id, scope["method"], scope["path"])
    except OSError as exc:
        if not exchange.disconnected:
            log.exception("%s %s: exception in the app", scope["method"], scope["path"])
            await fail(exchange, cycle.server_header)
        else:  # the app gave up on a client that went away (e.g. raised on http.disconnect)
            what = f"{scope['method']} {scope['path']}"
            log.debug("stream %d: %s ended as its client went away: %r", exchange.stream_id, what, exc)
    except StreamStateError:
        log.exception("%s %s: internal error (h2gate's stream bookkeeping)", scope["method"], scope["path"])
        await fail(exchange, cycle.server_header)
    except AppMistake as exc:
        log.error("%s %s: ASGI error in the app: %s", scope["method"], scope["path"], exc)
        await fail(exchange, cycle.server_header)
    except Exception as exc:
        log.exception("%s %s: exception in the app%s", scope["method"], scope["path"], loop_hint(runner, exc))
        await fail(exchange, cycle.server_header)
    except (SystemExit, KeyboardInterrupt, asyncio.CancelledError) as exc:  # one request must not stop the server
        what = f"{scope['method']} {scope['path']}"
        log.error("%s: the app raised %r; answered 500, the server keeps running", what, exc)
        await fail(exchange, cycle.server_header)
    finally:
        outcome = None  # the traceback refers to this frame
        if frames is not None:
            frames.finish()
        access_log(transport, scope, exchange, time.perf_counter() - started)
