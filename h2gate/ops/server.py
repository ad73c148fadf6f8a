"""Listening, accepting, transport setup and graceful shutdown.

Nursery layout (every task lives inside one of these)::

    root            signal watcher, lifespan task
      connections   one task per connection (handshake, then Connection.run)
        acceptors   trio.serve_listeners for every bound socket

Shutdown (first SIGTERM/SIGINT): cancel the acceptors and close the listening
sockets so new connections are refused, send GOAWAY on every connection, give
in-flight streams ``graceful_timeout`` seconds, run lifespan shutdown. A second
SIGINT cancels everything at once.
"""

from __future__ import annotations

import functools
import logging
import socket
import time
from collections.abc import Awaitable
from typing import Any

import trio

from h2gate.asgi.frames import FrameTap
from h2gate.asgi.http import serve_http
from h2gate.asgi.lifespan import Lifespan, LifespanFailure
from h2gate.asgi.runner import AppRunner
from h2gate.asgi.websocket import connect_protocol, handle_websocket, handle_websocket_http1
from h2gate.config import Config
from h2gate.http.forwarded import ProxyHeaders
from h2gate.net.negotiate import H2CUpgrade, Handoff, WebSocketUpgrade, negotiate
from h2gate.net.proxy_protocol import accept_header
from h2gate.net.transport import Address, CleartextTransport, TLSTransport, Transport
from h2gate.observe import metrics
from h2gate.ops import signals
from h2gate.ops.admission import Admission, Entry, Phase
from h2gate.ops.resources import default_max_connections, open_file_limit
from h2gate.protocol.driver import Connection
from h2gate.protocol.replies import simple_response
from h2gate.protocol.stream import Stream
from h2gate.tls.certstore import CertStore
from h2gate.tls.stream import TLSStream
from h2gate.wsgi import WSGIHandler

log = logging.getLogger("h2gate.error")
#: Seconds connections get after graceful_timeout to reset what they cut and flush it, before everything is cancelled.
CUT_MARGIN = 2.0


def _address(sock: trio.socket.SocketType, peer: bool) -> Address:
    try:
        addr = sock.getpeername() if peer else sock.getsockname()
    except OSError:
        return None
    if sock.family == socket.AF_UNIX:
        return None if peer else (str(addr), None)
    return (addr[0], addr[1])


class Server:
    def __init__(
        self,
        config: Config,
        runner: AppRunner,
        sockets: list[socket.socket],
        ssl_context: CertStore | None,
        on_ready: Any = None,
        wsgi: WSGIHandler | None = None,
        *,
        watch_signals: bool = True,
    ) -> None:
        self.config = config
        #: Off when trio runs outside the main thread (h2gate.testing): signals can only be caught there.
        self.watch_signals = watch_signals
        self.runner = runner
        self.sockets = sockets
        self.ssl_context = ssl_context
        self.on_ready = on_ready
        self.connections: set[Connection] = set()
        self.exit_code = 0
        self.failure: LifespanFailure | None = None
        self.wsgi = wsgi
        self.lifespan = Lifespan(runner, "off" if wsgi is not None else config.lifespan)
        self._shutdown = trio.Event()
        self._stopping = False
        self.max_connections = config.max_connections or default_max_connections(open_file_limit())
        self.admission = Admission(self.max_connections)  # --max-connections: who gets in, who makes room
        self.proxy = ProxyHeaders(config.forwarded_allow_ips) if config.proxy_headers else None
        self.metrics_url = metrics.start(config)  # a worker under the supervisor only records
        #: Process-model hooks (h2gate/ops/workers.py, systemd.py): called per request, and when shutdown starts.
        self.request_hook: Any = None
        self.on_stopping: Any = None
        self.signal_hooks = signals.Hooks()

    async def serve(self) -> None:
        try:
            await self._serve()
        finally:
            if self.wsgi is not None:
                self.wsgi.close()  # idle worker threads stop; one stuck in an app is left behind

    async def _serve(self) -> None:
        async with trio.open_nursery() as root:
            root.start_soon(self.runner.drive)
            root.start_soon(self._report_admission)
            if self.ssl_context is not None and self.config.ssl_session_tickets == "on":
                root.start_soon(self._rotate_ticket_keys)
            if self.watch_signals:
                root.start_soon(signals.watch, self, root.cancel_scope, self.signal_hooks)
            try:
                await self.lifespan.startup(root)
            except LifespanFailure as exc:
                self.failure = exc
                root.cancel_scope.cancel()
                return
            listeners = [trio.SocketListener(trio.socket.from_stdlib_socket(s)) for s in self.sockets]
            async with trio.open_nursery() as conns:
                async with trio.open_nursery() as acceptors:
                    await acceptors.start(
                        functools.partial(trio.serve_listeners, self._admit, listeners, handler_nursery=conns)
                    )
                    if self.on_ready is not None:
                        self.on_ready(self)
                    await self._shutdown.wait()
                    acceptors.cancel_scope.cancel()
                if self.on_stopping is not None:
                    self.on_stopping()
                for listener in listeners:
                    await listener.aclose()
                self._stopping = True
                log.info(
                    "shutting down: %d connection(s) open, waiting up to %gs for in-flight requests",
                    len(self.connections),
                    self.config.graceful_timeout,
                )
                for conn in list(self.connections):
                    conn.shutdown()
                # Each connection cuts its own streams at graceful_timeout (RST_STREAM, the access
                # log says so) and closes; this deadline only catches what is still stuck after that.
                conns.cancel_scope.deadline = trio.current_time() + self.config.graceful_timeout + CUT_MARGIN
            if conns.cancel_scope.cancelled_caught:
                log.warning("graceful timeout reached: remaining requests were cancelled")
            await self.lifespan.shutdown(self.config.graceful_timeout)
            log.info("stopped")
            root.cancel_scope.cancel()

    def request_shutdown(self) -> None:
        self._shutdown.set()

    # -- what the signal watcher (h2gate/ops/signals.py) may do --------------------------

    def shutdown_requested(self) -> bool:
        return self._shutdown.is_set()

    def reload_certificates(self) -> None:
        ok = True
        if self.ssl_context is None:
            log.info("received SIGHUP: nothing to reload (no TLS)")
        else:
            log.info("received SIGHUP: reloading certificates")
            ok = self.ssl_context.reload()
        metrics.recorder.reloaded(ok)

    def set_exit_code(self, code: int) -> None:
        self.exit_code = code

    async def _rotate_ticket_keys(self) -> None:
        """--ssl-ticket-key-lifetime: a fresh session-ticket key now and then (forward secrecy of resumed sessions)."""
        assert self.ssl_context is not None
        while True:
            await trio.sleep(self.config.ssl_ticket_key_lifetime)
            self.ssl_context.rotate_ticket_key()

    # -- admission (h2gate/ops/admission.py) -------------------------------------------

    def _admit(self, stream: trio.SocketStream) -> Awaitable[None]:
        """--max-connections: make room by closing a stalled handshake or an idle connection, else refuse.

        Not a coroutine itself: its frame would stay on every connection's stack for the connection's life.
        """
        entry, victim = self.admission.admit(time.monotonic())
        if victim is not None:
            if victim.phase is Phase.HANDSHAKE:
                metrics.recorder.connection_evicted("handshake")
                victim.scope.cancel()
            else:
                metrics.recorder.connection_evicted("idle")
                victim.conn.shutdown()  # GOAWAY: its client opens a new connection when it needs one
        if entry is None:
            metrics.recorder.connection_rejected()
            return trio.aclose_forcefully(stream)
        return self._handle(stream, entry)

    async def _report_admission(self) -> None:
        """One log line when the limit is first reached, one with the totals when the burst is over."""
        limit = self.max_connections
        while True:
            await self.admission.burst_event.wait()
            log.warning("--max-connections %d reached: closing stalled handshakes and idle connections first", limit)
            started = trio.current_time()
            while True:  # quiet for a second, or a report every 10 s during a long burst
                seen = self.admission.quiet_since()
                await trio.sleep(1.0)
                if self.admission.quiet_since() == seen or trio.current_time() - started >= 10:
                    break
            burst = self.admission.take_burst()
            took = trio.current_time() - started
            log.log(
                logging.WARNING if burst.refused else logging.INFO,
                "--max-connections %d: in %.1fs refused %d new connection(s), closed %d stalled handshake(s) "
                "and %d idle connection(s) to make room",
                limit,
                took,
                burst.refused,
                burst.handshakes,
                burst.idle,
            )

    async def _handle(self, stream: trio.SocketStream, entry: Entry) -> None:
        try:
            # Only a handshake may be cancelled to make room (an idle connection gets a GOAWAY instead), so the
            # scope covers just that: a cancel scope per idle connection is memory (bench/README.md).
            with entry.scope:
                opened = await self._open_transport(stream)
            if entry.scope.cancelled_caught:
                with trio.CancelScope(shield=True):
                    await trio.aclose_forcefully(stream)
                return
            if opened is None or (self._stopping and isinstance(opened[1], WebSocketUpgrade)):
                await stream.aclose()
                return
            transport, upgrade = opened
            if isinstance(upgrade, WebSocketUpgrade):
                entry.other()
            kind = metrics.transport_kind(transport, upgrade)
            metrics.recorder.connection_opened(kind)
            try:
                if isinstance(upgrade, WebSocketUpgrade):
                    await self._serve_websocket_http1(transport, upgrade)
                    return
                tap = FrameTap() if self.config.frame_api != "off" and self.wsgi is None else None
                conn = Connection(
                    transport, self.config, self._handle_exchange, upgrade, extended_connect=self.wsgi is None,
                    frame_tap=tap,
                )  # fmt: skip
                self.connections.add(conn)
                entry.serving(conn)
                if self._stopping:
                    # Accepted before the listeners closed, negotiated after shutdown began:
                    # GOAWAY (a request already sent is retried elsewhere), not a dropped connection.
                    conn.shutdown()
                try:
                    await conn.run()
                finally:
                    self.connections.discard(conn)
            finally:
                metrics.recorder.connection_closed(kind)
        except Exception:
            log.exception("internal error on a connection; it was closed")
            with trio.CancelScope(shield=True):
                await stream.aclose()
        finally:
            self.admission.leave(entry)

    async def _open_transport(
        self, stream: trio.SocketStream
    ) -> tuple[Transport, H2CUpgrade | WebSocketUpgrade | None] | None:
        """The transport HTTP/2 runs on (plus an h2c or WebSocket upgrade to answer), or None to close."""
        peer = _address(stream.socket, peer=True)
        local = _address(stream.socket, peer=False)
        if self.config.proxy_protocol:  # the balancer's header comes before TLS and HTTP/2
            header = await accept_header(stream, peer, self.config.handshake_timeout)
            if header is None:
                return None
            peer = header.source
        if stream.socket.family != socket.AF_UNIX:
            stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
        who = f"{peer[0]}:{peer[1]}" if peer else "unix socket"
        if self.ssl_context is None:
            # Prior knowledge, HTTP/1.1 Upgrade: h2c or a refusal, told apart by the first bytes.
            handoff = await self._negotiate(stream, who, allow_upgrade=True)
            if handoff is None:
                return None
            return CleartextTransport(handoff.stream, peer, local), handoff.upgrade or handoff.websocket
        tls = TLSStream(stream, self.ssl_context.context)
        with trio.move_on_after(self.config.handshake_timeout) as timeout:
            try:
                await tls.do_handshake()
            except trio.BrokenResourceError as exc:
                if tls.peer_cert_error is not None:
                    log.warning(
                        "TLS handshake with %s failed: client certificate rejected: %s", who, tls.peer_cert_error
                    )
                else:
                    log.debug("TLS handshake with %s failed: %s", who, exc.__cause__ or exc)
                return None
        if timeout.cancelled_caught:
            log.info("TLS handshake with %s timed out after %gs", who, self.config.handshake_timeout)
            return None
        if tls.info.alpn == "h2":
            return TLSTransport(tls, peer, local, tls.info), None
        # No ALPN or http/1.1 only: h2 by prior knowledge is still possible,
        # otherwise the HTTP/1.1 request gets the 505 hint (no h2c over TLS).
        offered = tls.info.alpn or "no ALPN"
        log.debug("client %s did not negotiate h2 (%s): looking at what it sends", who, offered)
        handoff = await self._negotiate(tls, who, allow_upgrade=False)
        if handoff is None:
            await tls.aclose()
            return None
        return TLSTransport(handoff.stream, peer, local, tls.info), handoff.websocket

    async def _negotiate(self, stream: trio.abc.Stream, who: str, *, allow_upgrade: bool) -> Handoff | None:
        websocket = self.config.ws_http1 and self.wsgi is None
        try:
            return await negotiate(stream, self.config, who, allow_upgrade=allow_upgrade, allow_websocket=websocket)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            log.debug("connection from %s lost before HTTP/2 started: %r", who, exc)
            return None

    async def _serve_websocket_http1(self, transport: Transport, upgrade: WebSocketUpgrade) -> None:
        await handle_websocket_http1(transport, upgrade, self.runner, **self._websocket_options())

    def _websocket_options(self) -> dict[str, Any]:
        """What a WebSocket session needs from the server, over HTTP/2 and HTTP/1.1 alike."""
        return {
            "root_path": self.config.root_path,
            "state": self.lifespan.state,
            "server_header": self.config.server_header,
            "max_message_size": self.config.ws_max_message_size,
            "stopping": self._shutdown,
        }

    def _handle_exchange(self, conn: Connection, exchange: Stream) -> Awaitable[None] | None:
        """The coroutine that serves ``exchange``, for the stream's task to await; None when an HTTP request
        was started on the hosted asyncio loop without a task (h2gate.asgi.http.serve_http).

        Not a coroutine itself: picking the handler needs no waiting, and every
        frame on a task's await chain is passed through at each of its switches.
        """
        if self.request_hook is not None:
            self.request_hook()
        transport = conn.transport
        if self.proxy is not None:  # once per exchange: ASGI, WSGI and the access log see the same
            transport = self.proxy.apply(exchange.head, transport)
        if self.wsgi is not None:
            return self.wsgi.handle(exchange, transport)
        protocol = connect_protocol(exchange)
        if protocol is not None and protocol != b"websocket":
            return simple_response(
                exchange, 501, b"Extended CONNECT is supported for websocket only\n", self.config.server_header
            )
        if protocol is not None:
            return handle_websocket(exchange, transport, self.runner, **self._websocket_options())
        return serve_http(
            exchange,
            transport,
            self.runner,
            conn,
            root_path=self.config.root_path,
            state=self.lifespan.state,
            server_header=self.config.server_header,
            frame_tap=conn.frame_tap if isinstance(conn.frame_tap, FrameTap) else None,
        )
