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
import signal
import socket
from typing import Any

import trio
from OpenSSL import SSL

from h2gate.asgi.http import handle_http
from h2gate.asgi.lifespan import Lifespan, LifespanFailure
from h2gate.asgi.runner import AppRunner
from h2gate.config import Config
from h2gate.connection import Connection
from h2gate.exchange import Exchange
from h2gate.tls_stream import TLSStream
from h2gate.transport import Address, CleartextTransport, TLSTransport, Transport

log = logging.getLogger("h2gate.error")


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
        ssl_context: SSL.Context | None,
        on_ready: Any = None,
    ) -> None:
        self.config = config
        self.runner = runner
        self.sockets = sockets
        self.ssl_context = ssl_context
        self.on_ready = on_ready
        self.connections: set[Connection] = set()
        self.exit_code = 0
        self.failure: LifespanFailure | None = None
        self.lifespan = Lifespan(runner, config.lifespan)
        self._shutdown = trio.Event()
        self._stopping = False

    async def serve(self) -> None:
        async with trio.open_nursery() as root:
            root.start_soon(self._watch_signals, root.cancel_scope)
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
                        functools.partial(trio.serve_listeners, self._handle, listeners, handler_nursery=conns)
                    )
                    if self.on_ready is not None:
                        self.on_ready(self)
                    await self._shutdown.wait()
                    acceptors.cancel_scope.cancel()
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
                conns.cancel_scope.deadline = trio.current_time() + self.config.graceful_timeout
            if conns.cancel_scope.cancelled_caught:
                log.warning("graceful timeout reached: remaining requests were cancelled")
            await self.lifespan.shutdown(self.config.graceful_timeout)
            log.info("stopped")
            root.cancel_scope.cancel()

    def request_shutdown(self) -> None:
        self._shutdown.set()

    async def _watch_signals(self, root_scope: trio.CancelScope) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                if not self._shutdown.is_set():
                    log.info("received %s: stopping gracefully", signal.Signals(signum).name)
                    self._shutdown.set()
                elif signum == signal.SIGINT:
                    log.warning("second SIGINT: exiting now")
                    self.exit_code = 130
                    root_scope.cancel()
                    return

    async def _handle(self, stream: trio.SocketStream) -> None:
        try:
            transport = await self._open_transport(stream)
            if transport is None or self._stopping:
                await stream.aclose()
                return
            conn = Connection(transport, self.config, self._handle_exchange)
            self.connections.add(conn)
            try:
                await conn.run()
            finally:
                self.connections.discard(conn)
        except Exception:
            log.exception("internal error on a connection; it was closed")
            with trio.CancelScope(shield=True):
                await stream.aclose()

    async def _open_transport(self, stream: trio.SocketStream) -> Transport | None:
        peer = _address(stream.socket, peer=True)
        local = _address(stream.socket, peer=False)
        if stream.socket.family != socket.AF_UNIX:
            stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
        if self.ssl_context is None:
            return CleartextTransport(stream, peer, local)
        tls = TLSStream(stream, self.ssl_context)
        who = f"{peer[0]}:{peer[1]}" if peer else "unix socket"
        with trio.move_on_after(self.config.handshake_timeout) as timeout:
            try:
                await tls.do_handshake()
            except trio.BrokenResourceError as exc:
                log.debug("TLS handshake with %s failed: %s", who, exc.__cause__ or exc)
                return None
        if timeout.cancelled_caught:
            log.debug("TLS handshake with %s timed out after %gs", who, self.config.handshake_timeout)
            return None
        if tls.info.alpn != "h2":
            offered = tls.info.alpn or "no ALPN"
            log.info("client %s did not negotiate HTTP/2 (%s); this server speaks HTTP/2 only", who, offered)
            await tls.aclose()
            return None
        return TLSTransport(tls, peer, local, tls.info)

    async def _handle_exchange(self, conn: Connection, exchange: Exchange) -> None:
        await handle_http(
            exchange,
            conn.transport,
            self.runner,
            root_path=self.config.root_path,
            state=self.lifespan.state,
            server_header=self.config.server_header,
        )
