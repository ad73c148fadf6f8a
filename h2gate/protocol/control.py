"""The connection-level half of the core: its lifetime, control frames, timers and shutdown.

Theory of operation. :class:`ConnectionControl` is the lowest base of
:class:`h2gate.protocol.core.ConnectionCore`, below
:class:`~h2gate.protocol.output.ConnectionOutput` (its methods run on the core and
read the core's state; it holds none of its own). The core keeps the
per-request path (HEADERS → validated head → :class:`~h2gate.protocol.stream.Stream`
→ the driver's ``spawn``) and the stream-level events, the output module what
is sent for streams and how they end; everything here is about the connection
as a whole:

* the client's SETTINGS, PING, GOAWAY and PRIORITY_UPDATE (each charged to the
  control-reply budget where it asks for an answer);
* :meth:`fail`, :meth:`drain`, :meth:`shutdown`, :meth:`lost`: every phase
  change goes through :mod:`h2gate.protocol.closing` and its one table;
* the adaptive receive windows' new sizes (:meth:`_resize`);
* :meth:`on_timer`: the deadlines (handshake, keep-alive, header block,
  drain PING, shutdown's cut, budget trim, window shrink, request bodies),
  each keyed in :attr:`ConnectionCore.deadlines` by one of the names below
  or by a stream id.

None of it waits; none of it is on the path of a request that goes well,
besides :meth:`_arm_idle` as the last stream ends.
"""

from __future__ import annotations

import logging
import math
from abc import abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from h2gate.errors import ErrorCode
from h2gate.protocol import codec as ev
from h2gate.protocol.closing import DRAIN
from h2gate.protocol.flowcontrol import Change
from h2gate.protocol.lifecycle import Phase, Trigger
from h2gate.protocol.stream import Stream
from h2gate.protocol.stream_state import State

if TYPE_CHECKING:
    from h2gate.config import Config
    from h2gate.protocol.closing import Closing
    from h2gate.protocol.codec import Codec
    from h2gate.protocol.flowcontrol import ReceiveWindows
    from h2gate.protocol.guards import Guards
    from h2gate.protocol.priority import SendTurns
    from h2gate.protocol.signal import Signal
    from h2gate.protocol.timeouts import Deadlines

log = logging.getLogger("h2gate.error")
#: Seconds after a connection goes idle that its rate budgets drop what has aged out (h2gate.protocol.guards).
TRIM_AFTER = 1.5

#: Deadline keys besides stream ids (which time request bodies) and the drain PING's (h2gate.protocol.closing).
HANDSHAKE, IDLE, HEADER_BLOCK, CUT, TRIM = "handshake", "idle", "header block", "cut", "trim"
WINDOWS = "windows"


class ConnectionControl:
    """The connection-level methods of :class:`~h2gate.protocol.core.ConnectionCore` (see the module docstring)."""

    __slots__ = ()

    # The core's state these methods read (ConnectionCore.__init__ makes it) and the parts of the core they
    # call, declared here rather than under TYPE_CHECKING, which a compiled build (bench/mypyc_tree.py)
    # refuses in a class body. ConnectionCore implements `closed`, ConnectionOutput `reset_stream`.
    _receiving: bool
    clock: Callable[[], float]
    closing: Closing
    codec: Codec
    config: Config
    deadlines: Deadlines
    drained: Signal
    extended_connect: bool
    guards: Guards
    on_closed: Callable[[], None] | None
    peer: str
    streams: dict[int, Stream]
    turns: SendTurns
    wake: Callable[[], None]
    windows: ReceiveWindows | None

    @property
    @abstractmethod
    def closed(self) -> bool:
        """No more frames will be produced."""

    @abstractmethod
    def reset_stream(self, stream_id: int, code: int, why: str | None, *, charge: bool = False) -> None:
        """RST_STREAM ``code`` on ``stream_id``: the core's one reset path."""

    # -- state others read ------------------------------------------------------------------------------

    @property
    def phase(self) -> Phase:
        return self.closing.lifecycle.phase

    @property
    def ended(self) -> trio.Event:
        """Set once the connection is CLOSED."""
        return self.closing.ended

    @property
    def linger(self) -> bool:
        """The close was ours: read and discard a moment longer, so the client reads our GOAWAY."""
        return self.closing.linger

    def _idle(self) -> bool:
        return not self.streams and not self._receiving

    # -- control frames ---------------------------------------------------------------------------------------

    def _on_settings(self, event: ev.SettingsReceived) -> None:
        if self.guards.control_reply():
            self.fail(ErrorCode.ENHANCE_YOUR_CALM, "flood of control frames while not reading our replies")
            return
        if not self.closing.settings_seen:  # the client's first SETTINGS: the handshake is done
            self.deadlines.disarm(HANDSHAKE)
            if self.closing.handshake_done(event.ids):
                self._arm_idle()
        if event.initial_window_changed:
            for stream in self.streams.values():
                stream._on_window()

    def _on_ping(self, event: ev.PingReceived) -> None:
        if self.guards.control_reply():
            self.fail(ErrorCode.ENHANCE_YOUR_CALM, "flood of control frames while not reading our replies")

    def _on_ping_ack(self, event: ev.PingAcked) -> None:
        windows = self.windows
        if windows is not None:
            changes = windows.acked(event.data, self.clock())
            if changes is not None:  # the ACK of a flow-control PING
                self._resize(changes)
                return
        self.closing.ping_acked(event.data)

    def _on_goaway(self, event: ev.GoAwayReceived) -> None:
        self.closing.peer_goaway(event.code)

    def _on_priority_update(self, event: ev.PriorityUpdated) -> None:
        self.turns.update(event.stream_id, event.value)  # a malformed value is ignored (RFC 9218 §7)

    # -- closing (h2gate.protocol.closing has every GOAWAY) -------------------------------------------------------

    def fail(self, code: int, reason: str, *, kind: str = "closing connection") -> None:
        """A connection error: GOAWAY ``code`` and one log line, then CLOSED. Idempotent."""
        self.closing.fail(code, reason, kind=kind)

    def drain(self) -> None:
        """Begin a graceful close (RFC 9113 §6.8): new streams stop, the ones in flight finish."""
        self.deadlines.disarm(IDLE)
        self.closing.drain()
        self.wake()

    def shutdown(self, grace: float) -> None:
        """Server shutdown: drain, and cut whatever still runs after ``grace`` seconds."""
        self.drain()
        if not self.closed:
            self.deadlines.arm(CUT, self.clock() + grace)

    def lost(self) -> None:
        """The transport broke or the client closed it: nothing more reaches the client."""
        self.closing.close(Trigger.LOST, linger=False)
        self.drained.fire()  # senders waiting for room learn it is gone

    def _lose_streams(self) -> None:
        """The connection is CLOSED: every stream still open learns it is gone, as if the client reset it."""
        for stream in list(self.streams.values()):
            if stream.reset_code is None:
                stream._on_lost()
        if self.on_closed is not None:
            self.on_closed()

    def _arm_idle(self) -> None:
        if not self.streams:
            if self.config.keep_alive_timeout:
                self.deadlines.arm(IDLE, self.clock() + self.config.keep_alive_timeout)
            if self.guards.holding and not self.deadlines.armed(TRIM):  # let an idle connection forget its rates
                self.deadlines.arm(TRIM, self.clock() + TRIM_AFTER)

    # -- adaptive receive windows --------------------------------------------------------------------------------

    def _resize(self, changes: list[Change]) -> None:
        """Apply the adaptive windows' new sizes, and time their next shrink."""
        windows = self.windows
        if windows is None or self.closed:
            return
        for stream_id, size in changes:
            self.codec.set_receive_window(stream_id, size)
            log.debug(
                "receive window of %s from %s now %d bytes (round trip %s)",
                f"stream {stream_id}" if stream_id else "the connection",
                self.peer,
                size,
                "unknown" if windows.rtt is None else f"{windows.rtt * 1000:.1f} ms",
            )
        if changes:
            self.wake()
        due = windows.next_check
        if due < math.inf:
            self.deadlines.arm(WINDOWS, due)
        else:
            self.deadlines.disarm(WINDOWS)

    # -- time -----------------------------------------------------------------------------------------------------

    def on_timer(self) -> None:
        """Act on every deadline that has passed (the driver calls this when :attr:`deadlines` says so)."""
        for key in self.deadlines.expired(self.clock()):
            if self.closed:
                return
            handler = _TIMERS.get(key) if isinstance(key, str) else None
            if handler is not None:
                handler(self)
            elif isinstance(key, int):
                self._body_deadline(key)

    def _handshake_timeout(self) -> None:
        log.info("no HTTP/2 preface from %s within %gs", self.peer, self.config.handshake_timeout)
        self.closing.goaway(0, ErrorCode.NO_ERROR)
        self.closing.close(Trigger.FAIL, linger=True)

    def _idle_timeout(self) -> None:
        if not self.streams and self.closing.phase is Phase.OPEN:
            log.debug("closing idle connection from %s", self.peer)
            self.drain()

    def _header_block_timeout(self) -> None:
        self.fail(ErrorCode.ENHANCE_YOUR_CALM, f"header block not finished within {self.config.header_timeout:g}s")

    def _windows_idle(self) -> None:
        if self.windows is not None:
            self._resize(self.windows.idle(self.clock()))

    def _cut(self) -> None:
        """Shutdown's grace period is over: reset what still runs, cancel its app, then close."""
        cut = 0
        for stream in list(self.streams.values()):
            if not stream.state.done and stream.reset_code is None:
                cut += 1
                stream._cut()
            stream.cancel_app()
        if cut:
            log.info("graceful timeout: %d stream(s) from %s cut", cut, self.peer)
        self.closing.close(Trigger.FAIL, linger=True)

    def _body_deadline(self, stream_id: int) -> None:
        """A request body went quiet: reset it after ``body_timeout``, unless the client could not send."""
        stream = self.streams.get(stream_id)
        if stream is None or stream.state.request is not State.OPEN or stream.reset_code is not None:
            return
        now = self.clock()
        timeout = self.config.body_timeout
        blocked = stream.buffered or self.codec.inbound_window <= 0  # the client may have no window
        due = now + timeout if blocked else stream.last_activity + timeout
        if due > now:
            self.deadlines.arm(stream_id, due)
            return
        self.reset_stream(stream_id, ErrorCode.CANCEL, f"request body idle for {timeout:g}s")


_TIMERS: dict[str, Callable[[ConnectionControl], None]] = {
    HANDSHAKE: ConnectionControl._handshake_timeout,
    IDLE: ConnectionControl._idle_timeout,
    HEADER_BLOCK: ConnectionControl._header_block_timeout,
    DRAIN: lambda core: core.closing.drain_due(),
    CUT: ConnectionControl._cut,
    TRIM: lambda core: core.guards.trim(core.clock()),
    WINDOWS: ConnectionControl._windows_idle,
}
