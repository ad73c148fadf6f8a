"""The protocol loop: one task group per connection owning one ``H2Connection``.

Theory of operation. Three kinds of task live in the connection's nursery:

* the *reader* pulls bytes off the transport, feeds them to h2 and dispatches
  the resulting events (synchronously: no task switch per frame), then wakes
  the writer once for the whole batch;
* the *writer* is the only code that sends on the transport: it takes
  everything h2 has queued (``data_to_send``) and sends it in one call, so
  frames produced by a batch of input or by several streams go out together;
* one *stream task* per request runs the application through an adapter
  (``h2gate.asgi``), talking to h2 through :class:`~h2gate.protocol.exchange.Exchange`.

All of them run in the same trio thread, so h2 is never touched concurrently.
The connection ends when the peer goes away, when h2 reports a connection
error (its GOAWAY is flushed first), on idle timeout, or after a graceful
shutdown has let the in-flight streams finish.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import trio
from h2.errors import ErrorCodes
from hyperframe.frame import GoAwayFrame

from h2gate.config import Config
from h2gate.http.validate import request_problem, trailer_problem
from h2gate.internals.h2conn import initiate, new_h2_connection
from h2gate.net.negotiate import H2CUpgrade
from h2gate.net.socket_send import sender
from h2gate.net.transport import Transport
from h2gate.observe import metrics
from h2gate.protocol.exchange import Exchange
from h2gate.protocol.framecheck import FrameCheck, Piece, StreamError
from h2gate.protocol.guards import HEADER_BLOCK_MARGIN, Guards
from h2gate.protocol.limits import HIGH_WATER, BodyLengths, BodySizes, RateBudget, ResetBudget
from h2gate.protocol.peer_errors import PeerErrors
from h2gate.protocol.priority import SendTurns
from h2gate.protocol.signal import Signal
from h2gate.protocol.timeouts import Watchdog

log = logging.getLogger("h2gate.error")

#: Seconds between the first (2^31-1) and the final GOAWAY of a graceful close (RFC 9113 §6.8).
GOAWAY_GRACE = 0.2
READ_SIZE = 256 * 1024

StreamHandler = Callable[["Connection", Exchange], Awaitable[None]]


class Connection(PeerErrors, Guards):
    def __init__(
        self, transport: Transport, config: Config, handler: StreamHandler, upgrade: H2CUpgrade | None = None
    ) -> None:
        self.transport = transport
        self.upgrade = upgrade  # set when the client arrived by HTTP/1.1 Upgrade: h2c
        self.config = config
        self.handler = handler
        self.h2 = new_h2_connection()
        self.turns = SendTurns()  # RFC 9218 send order of this connection's streams
        self.h2.on_priority_update = self._on_priority_update
        self.exchanges: dict[int, Exchange] = {}
        self.closed = False  # no more bytes will reach the peer
        self.queued = 0  # DATA bytes handed to h2 since the writer last took its buffer
        self._wake = trio.Event()
        self.drained = Signal()
        self._streams_changed = Signal()
        self._finished = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._read_scope = trio.CancelScope()
        self._accept_streams = True
        self._last_stream_id = 2**31 - 1
        self._peer_goaway = False
        self._closing = False
        self._unflushed_control = 0
        self._resets = ResetBudget(config.max_resets_per_second)
        self._raw_out: list[bytes] = []
        self._preface_seen = False
        self._frame_check = FrameCheck(
            upgraded=upgrade is not None, max_header_block=config.max_header_list_size + HEADER_BLOCK_MARGIN
        )
        self._empty_frames = RateBudget(config.max_empty_frames_per_second)
        self._body_sizes = BodySizes(config.max_body_size)
        self._watchdog = Watchdog()
        self._drain_input = False
        self._bad_headers: set[int] = set()  # streams whose HEADERS depended on themselves (FrameCheck)
        self._body_lengths = BodyLengths()
        self._writing = False
        self.requests = 0
        self.extended_connect = True  # advertise RFC 8441 extended CONNECT (WebSockets); off for WSGI apps
        self.frame_tap: Callable[[Connection, h2.events.Event], None] | None = None  # --enable-frame-api

    # -- setup -------------------------------------------------------------------

    def _initiate(self) -> None:
        initiate(
            self.h2,
            self.config,
            extended_connect=self.extended_connect,
            upgrade_settings=None if self.upgrade is None else self.upgrade.settings,
        )

    # -- lifetime ------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until it is done; never raises for peer misbehaviour."""
        self._initiate()
        async with trio.open_nursery() as streams:
            self._nursery = streams
            if self._closing:  # shutdown() came before run()
                streams.start_soon(self._graceful_goaway)
            try:
                async with trio.open_nursery() as io:
                    io.start_soon(self._writer)
                    io.start_soon(self._reader)
                    io.start_soon(self._watchdog.run, self._on_deadline)
                    if self.upgrade is not None:
                        self._start_upgraded_request(self.upgrade)
                    self.wake_writer()
                    await self._finished.wait()
                    await self._final_flush()
                    await self._drain_before_close()
                    io.cancel_scope.cancel()
            finally:
                self.closed = True
                self.drained.fire()  # senders waiting for room (h2gate.asgi.runner) learn it is gone
                with trio.CancelScope(shield=True), trio.move_on_after(1):
                    await self.transport.stream.aclose()
            await self._release_streams()
            streams.cancel_scope.cancel()

    async def _release_streams(self) -> None:
        """The connection is gone: tell every stream's app, then give the apps a bounded moment.

        Apps see ``http.disconnect`` or an OSError from ``send()`` rather than a
        cancellation, so work after a complete response (background tasks) can
        finish; whatever still runs after ``graceful_timeout`` is cancelled.
        """
        for exchange in list(self.exchanges.values()):
            exchange.on_reset(ErrorCodes.CANCEL)
        with trio.move_on_after(self.config.graceful_timeout):
            while self.exchanges:
                await self._streams_changed.wait()

    def _finish(self) -> None:
        self._finished.set()

    async def _final_flush(self) -> None:
        """Give the writer a bounded moment to put the last frames (GOAWAY) on the wire."""
        with trio.move_on_after(1):
            while (self._wake.is_set() or self._writing) and not self.closed:
                await self.drained.wait()

    def shutdown(self) -> None:
        """Graceful close (server shutdown): GOAWAY, let in-flight streams finish, then close."""
        if self._closing or self._finished.is_set():
            return
        self._closing = True
        if self._nursery is not None:  # else run() starts it
            self._nursery.start_soon(self._graceful_goaway)

    async def _graceful_goaway(self) -> None:
        # At a moment with no open stream the final GOAWAY goes out at once: a
        # request still on the wire then has an id above last_stream_id, which
        # clients retry on a new connection (httpx fails a stream that is open
        # when the 2^31-1 GOAWAY arrives). A connection that stays busy gets the
        # two-step close: first GOAWAY with the largest id tells the client to
        # stop opening streams without losing ones already in flight; the final
        # one names the last stream we will process (RFC 9113 §6.8). A new
        # connection first gets a moment to send its request: httpx retries
        # nothing when the last stream id is 0.
        with trio.move_on_after(GOAWAY_GRACE):
            while self.exchanges or self.h2.highest_inbound_stream_id == 0:
                await self._streams_changed.wait()
        if self.exchanges:
            self._send_goaway(2**31 - 1, ErrorCodes.NO_ERROR)
            await trio.sleep(GOAWAY_GRACE)
        self._last_stream_id = self.h2.highest_inbound_stream_id
        self._accept_streams = False
        self._send_goaway(self._last_stream_id, ErrorCodes.NO_ERROR)
        self._maybe_finish()

    def _send_goaway(self, last_stream_id: int, code: ErrorCodes, debug: bytes = b"") -> None:
        # Written as a raw frame so h2's state machine stays open for the
        # streams still in flight (h2's close_connection would end them).
        frame = GoAwayFrame(0)
        frame.last_stream_id = last_stream_id
        frame.error_code = code
        frame.additional_data = debug
        self._raw_out.append(frame.serialize())
        metrics.recorder.goaway_sent(code)
        self.wake_writer()

    def _stop_reading(self) -> None:
        self._read_scope.cancel()

    def _maybe_finish(self) -> None:
        if not self.exchanges and (self._peer_goaway or (self._closing and not self._accept_streams)):
            self._finish()
        self._update_idle_deadline()

    def _update_idle_deadline(self) -> None:
        if not self._preface_seen:
            return
        if self.exchanges or not self.config.keep_alive_timeout:
            if self._read_scope.deadline != math.inf:  # setting it re-registers the scope: not per request
                self._read_scope.deadline = math.inf
        else:
            self._read_scope.deadline = trio.current_time() + self.config.keep_alive_timeout

    # -- writer --------------------------------------------------------------------

    def wake_writer(self) -> None:
        self._wake.set()

    async def wait_flushable(self) -> None:
        """Backpressure for senders: wait while the writer holds more than HIGH_WATER bytes."""
        while self.queued > HIGH_WATER and not self.closed:
            await self.drained.wait()

    async def _writer(self) -> None:
        send_all = sender(self.transport.stream)  # TLSStream's own, or the raw loop for h2c on a socket
        try:
            while True:
                await self._wake.wait()
                self._wake = trio.Event()
                data = self.h2.data_to_send()
                if self._raw_out:
                    data += b"".join(self._raw_out)
                    self._raw_out.clear()
                self.queued = 0
                self._unflushed_control = 0
                if data:
                    self._writing = True
                    await self._send_within_timeout(send_all, data)
                    metrics.recorder.bytes_sent(len(data))
                    self._writing = False
                self.drained.fire()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            log.debug("connection from %s lost while writing: %r", self.peer_text, exc)
            self.closed = True
            self.drained.fire()
            self._stop_reading()
            self._finish()

    # -- reader --------------------------------------------------------------------

    async def _reader(self) -> None:
        receive_some = self.transport.stream.receive_some
        # Until the client's preface and SETTINGS arrive, the handshake timeout applies.
        self._read_scope.deadline = trio.current_time() + self.config.handshake_timeout
        with self._read_scope:
            try:
                while True:
                    data = await receive_some(READ_SIZE)
                    metrics.recorder.bytes_received(len(data))
                    if not data:
                        log.debug("connection from %s closed by peer", self.peer_text)
                        break
                    pieces, problem = self._frame_check.feed(data)
                    if problem is not None:
                        self._fatal(*problem)
                        return
                    if not self._check_floods():
                        return
                    if not self._receive(pieces):
                        break
                    self.wake_writer()
                    if self._finished.is_set():
                        return
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                log.debug("connection from %s lost: %r", self.peer_text, exc)
                self.closed = True
        if self._read_scope.cancelled_caught and not self._finished.is_set():
            if self._preface_seen:
                log.debug("closing idle connection from %s", self.peer_text)
            else:
                log.info("no HTTP/2 preface from %s within %gs", self.peer_text, self.config.handshake_timeout)
            self._send_goaway(self.h2.highest_inbound_stream_id, ErrorCodes.NO_ERROR)
        self._finish()

    def _receive(self, pieces: list[Piece]) -> bool:
        """Hand one read, as cut by FrameCheck, to h2 and dispatch its events; False on a connection error.

        Pieces are handled in order, so a stream error FrameCheck found is
        applied exactly where its frame was in the byte stream.
        """
        for piece in pieces:
            if isinstance(piece, StreamError):
                self._on_stream_error(piece)
            else:
                try:
                    events = self.h2.receive_data(piece)  # type: ignore[arg-type]
                except h2.exceptions.ProtocolError as exc:
                    self._on_protocol_error(exc)
                    return False
                for event in events:
                    self._dispatch(event)
            if self._finished.is_set():
                break
        return True

    def _dispatch(self, event: h2.events.Event) -> None:
        handler = _DISPATCH.get(type(event))
        if handler is not None:
            handler(self, event)
        if self.frame_tap is not None:
            self.frame_tap(self, event)

    def _on_priority_update(self, stream_id: int, value: bytes) -> None:
        self.turns.update(stream_id, value)  # a malformed value is ignored (RFC 9218 §7)

    def _on_request(self, event: h2.events.RequestReceived) -> None:
        stream_id = event.stream_id
        if not self._accept_streams and stream_id > self._last_stream_id:
            # Sent before our final GOAWAY arrived; the client retries it (RFC 9113 §6.8).
            # Ignored as nghttp2 does: httpx fails a reset read along with the GOAWAY.
            log.debug("stream %d from %s after the final GOAWAY: ignored", stream_id, self.peer_text)
            return
        limit = self.config.max_concurrent_streams
        if len(self.exchanges) >= limit and self._open_streams() >= limit:  # counting walks every exchange
            log.info(
                "stream %d from %s over MAX_CONCURRENT_STREAMS (RST_STREAM REFUSED_STREAM)", stream_id, self.peer_text
            )
            self._bad_headers.discard(stream_id)
            self.h2.reset_stream(stream_id, ErrorCodes.REFUSED_STREAM)
            metrics.recorder.stream_reset("server", ErrorCodes.REFUSED_STREAM)
            self._count_reset()  # a client mistake: counts against the reset budget (MadeYouReset)
            return
        if stream_id in self._bad_headers:
            self._bad_headers.discard(stream_id)
            self._malformed(stream_id, "HEADERS depends on its own stream (RFC 9113 §5.3.1)")
            return
        problem = request_problem(event.headers, ended=event.stream_ended is not None)  # type: ignore[arg-type]
        if problem is not None:
            self._malformed(stream_id, problem)
            return
        exchange = Exchange(self, stream_id, list(event.headers))  # type: ignore[arg-type]
        handler = None
        if event.stream_ended is not None:
            exchange.request_ended = True
        else:
            declared = self._body_lengths.expect(stream_id, event.headers)  # type: ignore[arg-type]
            handler = self._body_refusal(stream_id, declared)
        self.exchanges[stream_id] = exchange
        self.requests += 1
        self._update_idle_deadline()  # the preface came first: no idle deadline while a stream is open
        self._watch_body(exchange)
        assert self._nursery is not None
        self._nursery.start_soon(self._run_exchange, exchange, handler)

    def _open_streams(self) -> int:
        """Client requests we accepted whose stream is still open in h2 (pushed ones count against the client's)."""
        streams = self.h2.streams
        return sum(
            1 for sid in self.exchanges if sid % 2 and (stream := streams.get(sid)) is not None and not stream.closed
        )

    def _start_upgraded_request(self, upgrade: H2CUpgrade) -> None:
        """Run the HTTP/1.1 request that carried ``Upgrade: h2c`` as stream 1 (RFC 7540 §3.2).

        Its body arrived before the switch, outside HTTP/2 flow control, so
        nothing is acknowledged for it.
        """
        exchange = Exchange(self, 1, list(upgrade.headers))
        if upgrade.body:
            exchange.on_data(upgrade.body, 0)
        exchange.on_end()
        self.exchanges[1] = exchange
        self.requests += 1
        assert self._nursery is not None
        self._nursery.start_soon(self._run_exchange, exchange)

    def start_pushed(self, stream_id: int, headers: list[tuple[bytes, bytes]]) -> None:
        """Serve a request we promised (PUSH_PROMISE) as if the client had sent it."""
        exchange = Exchange(self, stream_id, headers)
        exchange.request_ended = True
        self.exchanges[stream_id] = exchange
        self.requests += 1
        self._read_scope.deadline = math.inf
        assert self._nursery is not None
        self._nursery.start_soon(self._run_exchange, exchange)

    async def _run_exchange(self, exchange: Exchange, handler: StreamHandler | None = None) -> None:
        metrics.recorder.stream_opened()
        try:
            with exchange.scope:
                await (handler or self.handler)(self, exchange)
        except Exception:
            # Adapters turn app faults into 500/RST themselves; this is our own
            # bug, and it still must not take the other streams down with it.
            log.exception("internal error on stream %d from %s (stream reset)", exchange.stream_id, self.peer_text)
            exchange.reset(ErrorCodes.INTERNAL_ERROR)
        finally:
            if not exchange.done.is_set():
                exchange.reset(ErrorCodes.CANCEL)
            self.exchanges.pop(exchange.stream_id, None)
            self._body_lengths.forget(exchange.stream_id)
            self._body_sizes.forget(exchange.stream_id)
            self._watchdog.disarm(exchange.stream_id)
            metrics.recorder.stream_closed()
            self._streams_changed.fire()
            self._maybe_finish()

    def _on_data(self, event: h2.events.DataReceived) -> None:
        problem = self._body_lengths.data(event.stream_id, len(event.data))
        if problem is not None:
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            self._malformed(event.stream_id, problem)
            return
        if self._body_over_limit(event):
            return
        exchange = self.exchanges.get(event.stream_id)
        if exchange is None or exchange.disconnected:
            # Nobody will read these bytes: give the connection window back now.
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            return
        exchange.on_data(event.data, event.flow_controlled_length)

    def _on_stream_ended(self, event: h2.events.StreamEnded) -> None:
        problem = self._body_lengths.end(event.stream_id)
        if problem is not None:
            self._malformed(event.stream_id, problem)
            return
        exchange = self.exchanges.get(event.stream_id)
        if exchange is not None:
            exchange.on_end()

    def _on_trailers(self, event: h2.events.TrailersReceived) -> None:
        if event.stream_id in self._bad_headers:
            self._bad_headers.discard(event.stream_id)
            self._malformed(event.stream_id, "HEADERS depends on its own stream (RFC 9113 §5.3.1)")
            return
        problem = trailer_problem(event.headers)  # type: ignore[arg-type]
        if problem is not None:
            self._malformed(event.stream_id, problem)
            return
        exchange = self.exchanges.get(event.stream_id)
        if exchange is not None:
            exchange.on_trailers(list(event.headers))  # type: ignore[arg-type]

    def _on_reset(self, event: h2.events.StreamReset) -> None:
        metrics.recorder.stream_reset("client" if event.remote_reset else "server", event.error_code)
        self._bad_headers.discard(event.stream_id)
        self._body_lengths.forget(event.stream_id)
        exchange = self.exchanges.get(event.stream_id)
        if exchange is not None and event.remote_reset:
            log.debug("client reset stream %d (%s)", event.stream_id, event.error_code)
            exchange.on_reset(event.error_code)
            exchange.cancel_app_soon()
        self._count_reset()

    def _on_window(self, event: h2.events.WindowUpdated) -> None:
        if event.stream_id:
            exchange = self.exchanges.get(event.stream_id)
            if exchange is not None:
                exchange.on_window()
        else:
            for exchange in self.exchanges.values():
                exchange.on_window()

    def _on_settings(self, event: h2.events.RemoteSettingsChanged) -> None:
        self._count_control()
        if not self._preface_seen:
            self._preface_seen = True
            self._update_idle_deadline()
        if h2.settings.SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
            for exchange in self.exchanges.values():
                exchange.on_window()

    def _on_goaway(self, event: h2.events.ConnectionTerminated) -> None:
        if event.error_code:
            log.info("client %s sent GOAWAY %s", self.peer_text, event.error_code)
            for exchange in list(self.exchanges.values()):  # h2 is closed now: nothing more reaches the client
                exchange.on_reset(ErrorCodes.CANCEL)
            self._finish()
            return
        self._peer_goaway = True
        self._maybe_finish()


_DISPATCH: dict[type, Callable[[Connection, Any], None]] = {
    h2.events.RequestReceived: Connection._on_request,
    h2.events.DataReceived: Connection._on_data,
    h2.events.StreamEnded: Connection._on_stream_ended,
    h2.events.StreamReset: Connection._on_reset,
    h2.events.TrailersReceived: Connection._on_trailers,
    h2.events.WindowUpdated: Connection._on_window,
    h2.events.RemoteSettingsChanged: Connection._on_settings,
    h2.events.ConnectionTerminated: Connection._on_goaway,
    h2.events.PingReceived: Connection._count_control,
}
