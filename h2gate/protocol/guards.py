"""How a connection enforces the attack limits: floods, slow clients, oversized bodies.

A mixin of :class:`h2gate.protocol.connection.Connection`, beside
:class:`h2gate.protocol.peer_errors.PeerErrors`: the protocol loop calls one hook per
event and this module decides. Each limit is a ``Config`` option; the README
section "Limits and attack resistance" lists them with the reaction chosen:

* empty-frame flood (CVE-2019-9518): :class:`~h2gate.protocol.framecheck.FrameCheck`
  counts the frames, a per-second budget decides: GOAWAY ENHANCE_YOUR_CALM;
* header block not finished within ``header_timeout`` (slowloris on HEADERS,
  a slow CONTINUATION flood): GOAWAY ENHANCE_YOUR_CALM. HPACK state would be
  lost with the block, so nothing smaller than the connection can end;
* request body idle for ``body_timeout``: RST_STREAM CANCEL, the app sees
  ``http.disconnect``. Time the body waits in our buffer for the app does not
  count (the client may be blocked by flow control), nor do WebSockets;
* response stuck for ``send_timeout``: on flow-control window (zero-window
  stall, CVE-2019-9517) RST_STREAM CANCEL (see :mod:`h2gate.protocol.exchange`); on a
  socket the client does not read, the connection is dropped (a GOAWAY could
  not be written anyway);
* ``max_body_size``: a declared content-length over it gets 413 before the app
  runs; a body that grows past it mid-stream gets RST_STREAM CANCEL (the app
  has started, so REFUSED_STREAM, "not processed", would be untrue).

None of these resets count against the reset budget: they answer slowness or
size, not a burst of cheap mistakes.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import TYPE_CHECKING

import h2.exceptions
import trio
from h2.errors import ErrorCodes
from h2.events import DataReceived

from h2gate.net.socket_send import Send, SendTimeout
from h2gate.observe.logs import access_log
from h2gate.protocol.replies import simple_response

if TYPE_CHECKING:
    from h2gate.config import Config
    from h2gate.internals.h2conn import ServerH2Connection
    from h2gate.net.transport import Transport
    from h2gate.protocol.exchange import Exchange
    from h2gate.protocol.framecheck import FrameCheck
    from h2gate.protocol.limits import BodySizes, RateBudget
    from h2gate.protocol.timeouts import Watchdog

log = logging.getLogger("h2gate.error")
#: Watchdog key of the header block in progress (stream ids key the request bodies).
HEADER_BLOCK = "header block"
#: After an error GOAWAY, how long (s) and how much (bytes) we read and discard before closing.
DRAIN_TIME, DRAIN_BYTES = 1.0, 4 * 1024 * 1024
#: Room a header block gets on the wire beyond SETTINGS_MAX_HEADER_LIST_SIZE (HPACK rarely inflates; frame headers).
HEADER_BLOCK_MARGIN = 16_384


class Guards:
    config: Config
    h2: ServerH2Connection
    exchanges: dict[int, Exchange]
    _frame_check: FrameCheck
    _watchdog: Watchdog
    _empty_frames: RateBudget
    _body_sizes: BodySizes
    _drain_input: bool
    _unflushed_control: int  # PING/SETTINGS replies queued since the writer last took h2's buffer
    transport: Transport

    @property
    def peer_text(self) -> str:
        """Who the peer is, for log lines."""
        peer = self.transport.peer
        return f"{peer[0]}:{peer[1]}" if peer and peer[1] is not None else "unix socket"

    if TYPE_CHECKING:  # provided by Connection / PeerErrors

        def _fatal(self, code: ErrorCodes, reason: str) -> None: ...

    def _count_control(self, event: object = None) -> None:
        """A PING or SETTINGS we answer: too many replies waiting for the writer is a flood."""
        self._unflushed_control += 1
        if self._unflushed_control > self.config.max_control_frames:
            self._fatal(ErrorCodes.ENHANCE_YOUR_CALM, "flood of control frames while not reading our replies")

    def _check_floods(self) -> bool:
        """After FrameCheck cut a read: charge its empty frames, time a header block; False if we closed."""
        check = self._frame_check
        if check.empty_frames:
            count, check.empty_frames = check.empty_frames, 0
            if self._empty_frames.spend(time.monotonic(), count):
                self._fatal(ErrorCodes.ENHANCE_YOUR_CALM, "flood of empty frames")
                return False
        if not check.in_header_block:
            self._watchdog.disarm(HEADER_BLOCK)
        elif not self._watchdog.armed(HEADER_BLOCK):
            self._watchdog.arm(HEADER_BLOCK, trio.current_time() + self.config.header_timeout)
        return True

    def _watch_body(self, exchange: Exchange) -> None:
        """Start the request-body idle timer of a new request that still has a body to come."""
        timeout = self.config.body_timeout
        if timeout and not exchange.request_ended and exchange.head.method != b"CONNECT":
            self._watchdog.arm(exchange.stream_id, exchange.last_activity + timeout)

    def _on_deadline(self, key: Hashable) -> None:
        """The watchdog's callback: a header block or a request body took too long."""
        if key == HEADER_BLOCK:
            reason = f"header block not finished within {self.config.header_timeout:g}s"
            self._fatal(ErrorCodes.ENHANCE_YOUR_CALM, reason)
            return
        assert isinstance(key, int)
        exchange = self.exchanges.get(key)
        if exchange is None or exchange.request_ended or exchange.disconnected:
            return
        now = trio.current_time()
        timeout = self.config.body_timeout
        blocked = exchange.buffered or self.h2.inbound_flow_control_window <= 0  # the client may have no window
        due = now + timeout if blocked else exchange.last_activity + timeout
        if due > now:
            self._watchdog.arm(key, due)
            return
        log.info("request body from %s on stream %d idle for %gs (RST_STREAM CANCEL)", self.peer_text, key, timeout)
        exchange.reset(ErrorCodes.CANCEL)
        exchange.cancel_app_soon()

    def _body_over_limit(self, event: DataReceived) -> bool:
        """Count a DATA frame against ``max_body_size``; True if it broke the limit (stream reset)."""
        stream_id = event.stream_id
        if not self._body_sizes.add(stream_id, len(event.data)):
            return False
        log.info(
            "request body from %s on stream %d grew past --max-body-size %d (RST_STREAM CANCEL)",
            self.peer_text,
            stream_id,
            self._body_sizes.limit,
        )
        self.h2.acknowledge_received_data(event.flow_controlled_length, stream_id)
        exchange = self.exchanges.get(stream_id)
        if exchange is not None:
            exchange.reset(ErrorCodes.CANCEL)
            exchange.cancel_app_soon()
        else:
            try:
                self.h2.reset_stream(stream_id, ErrorCodes.CANCEL)
            except h2.exceptions.StreamClosedError:
                pass
        return True

    def _body_refusal(self, stream_id: int, declared: int | None) -> Callable[..., Awaitable[None]] | None:
        """The handler answering 413 when the declared content-length is over ``max_body_size``, else None."""
        if not self._body_sizes.too_large(declared):
            return None
        self._body_sizes.refuse(stream_id)
        log.info(
            "request body of %s bytes from %s on stream %d is over --max-body-size %d (413)",
            declared,
            self.peer_text,
            stream_id,
            self._body_sizes.limit,
        )
        return self._answer_413

    async def _answer_413(self, conn: object, exchange: Exchange) -> None:
        started = time.perf_counter()
        await simple_response(exchange, 413, b"Request body too large\n", self.config.server_header)
        head = exchange.head
        path, _, query = head.target.partition(b"?")
        scope = {"method": head.method.decode("latin-1"), "raw_path": path, "query_string": query}
        access_log(self.transport, scope, exchange, time.perf_counter() - started)

    async def _send_within_timeout(self, send: Send, data: bytes) -> None:
        """Write ``data``; a client that has not taken it all within ``send_timeout`` seconds is dropped.

        Raises SendTimeout (a trio.BrokenResourceError) then, which the writer
        handles like a lost connection. The deadline is the sender's to keep
        (h2gate.net.socket_send): it costs only when the socket is full.
        """
        timeout = self.config.send_timeout
        try:
            await send(data, trio.current_time() + timeout if timeout else math.inf)
        except SendTimeout:
            log.warning(
                "closing connection from %s: it did not read our bytes for %gs (send timeout)", self.peer_text, timeout
            )
            raise

    async def _drain_before_close(self) -> None:
        """After an error GOAWAY, read and discard what the client still sends, briefly.

        Closing a socket with unread input makes the kernel send a TCP RST, and
        an RST can destroy our GOAWAY in the client's receive buffer before the
        client reads it; so the client would never learn why. Bounded in time and bytes.
        """
        if not self._drain_input:
            return
        total = 0
        with trio.move_on_after(DRAIN_TIME):
            try:
                while total < DRAIN_BYTES:
                    data = await self.transport.stream.receive_some(65_536)
                    if not data:
                        return
                    total += len(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError, OSError):
                return
