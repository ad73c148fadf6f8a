"""How one connection ends: its phase, and every GOAWAY it sends.

Theory of operation. :class:`Closing` belongs to one
:class:`~h2gate.protocol.core.ConnectionCore` and owns the connection's
:class:`~h2gate.protocol.lifecycle.Lifecycle` and everything about the
GOAWAY frames: at most one *final* GOAWAY goes out (an error's, or the one
naming the last stream served), and after it nothing more, so a flood that
keeps breaking a limit gets one GOAWAY and one log line.

* :meth:`fail` is a connection error: GOAWAY with the RFC's code and the
  reason in words, one log line, then CLOSED.
* :meth:`drain` is a graceful close (RFC 9113 §6.8). Most clients get a PING
  and GOAWAY(2^31-1) at once, which stops new streams without losing the
  ones already on the wire; the final GOAWAY follows the PING's ACK (or
  DRAIN_PING_TIMEOUT). Clients on the Python h2 library (httpx among them)
  treat every frame after a GOAWAY as a protocol error and fail the requests
  in flight (encode/httpcore#730), though they retry one above the final
  GOAWAY's last stream id: they get only the final GOAWAY, at the first moment
  the connection is idle, so a request crossing it is retried (one that has
  sent no request yet gets FIRST_REQUEST_WAIT to send its first, which it
  writes after its SETTINGS: a last stream id of 0 would fail it).
* Once the final GOAWAY is out and the connection is idle, it is CLOSED.

It sees the rest of the core through two callbacks: whether the connection is
idle (no stream open, no read half dispatched) and what to do with the
streams when it closes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import trio

from h2gate.errors import ErrorCode, code_name
from h2gate.observe import metrics
from h2gate.protocol.codec import Codec
from h2gate.protocol.lifecycle import Lifecycle, Phase, Trigger
from h2gate.protocol.timeouts import Deadlines

log = logging.getLogger("h2gate.error")

MAX_STREAM_ID = 2**31 - 1
#: Seconds the client gets to answer our drain PING before the final GOAWAY goes out regardless.
DRAIN_PING_TIMEOUT = 1.0
#: Seconds a draining Python-h2 client that has sent no request yet gets to send its first one.
FIRST_REQUEST_WAIT = 0.5
#: The deadline key of the drain PING (and of that wait).
DRAIN = "drain"
#: The setting identifiers, in wire order, of a client on the Python h2 library: h2's own list, and
#: httpcore's (httpx), which drops ENABLE_CONNECT_PROTOCOL. No browser or proxy sends either.
PYTHON_H2_SETTINGS = ((0x1, 0x2, 0x4, 0x5, 0x8, 0x3, 0x6), (0x1, 0x2, 0x4, 0x5, 0x3, 0x6))


class Closing:
    """The phase and the GOAWAYs of one connection (see the module docstring)."""

    __slots__ = (
        "_clock", "_codec", "_deadlines", "_ended", "_final_sent", "_is_idle", "_on_closed", "_ping", "_wake",
        "highest", "last_stream_id", "lifecycle", "linger", "peer", "settings_seen", "strict",
    )  # fmt: skip

    def __init__(
        self,
        codec: Codec,
        deadlines: Deadlines,
        *,
        peer: str,
        wake: Callable[[], None],
        clock: Callable[[], float],
        is_idle: Callable[[], bool],
        on_closed: Callable[[], None],
        upgraded: bool = False,
    ) -> None:
        self._codec = codec
        self._deadlines = deadlines
        self.peer = peer
        self._wake = wake
        self._clock = clock
        self._is_idle = is_idle
        self._on_closed = on_closed
        self.lifecycle = Lifecycle()
        self._ended: trio.Event | None = None  # made when first asked for (the driver is told by a callback)
        self.linger = False  # read and discard after the last bytes, so the client sees our GOAWAY
        self.highest = 1 if upgraded else 0  # the highest stream id a request came on (the core keeps it)
        self.last_stream_id = MAX_STREAM_ID  # after the final GOAWAY: the last stream served
        self.settings_seen = False  # the client's first SETTINGS arrived
        self.strict = False  # the client takes no frame after a GOAWAY (see the module docstring)
        self._final_sent = False
        self._ping = os.urandom(8)

    @property
    def phase(self) -> Phase:
        return self.lifecycle.phase

    @property
    def closed(self) -> bool:
        return self.lifecycle.phase is Phase.CLOSED

    @property
    def ended(self) -> trio.Event:
        """Set once the phase is CLOSED (made on first use: an event per idle connection is memory)."""
        if self._ended is None:
            self._ended = trio.Event()
            if self.closed:
                self._ended.set()
        return self._ended

    def handshake_done(self, setting_ids: tuple[int, ...]) -> bool:
        """The client's first SETTINGS arrived; True if the connection just opened (else a drain goes on)."""
        self.settings_seen = True
        self.strict = setting_ids in PYTHON_H2_SETTINGS
        if self.lifecycle.fire(Trigger.SETTINGS):
            return True
        self._announce()  # a drain asked for during the handshake can start now
        return False

    def fail(self, code: int, reason: str, *, kind: str = "closing connection") -> None:
        """A connection error: GOAWAY ``code`` and one log line (WARNING for a flood), then CLOSED. Idempotent."""
        if self.closed:
            return
        level = logging.WARNING if code == ErrorCode.ENHANCE_YOUR_CALM else logging.INFO
        log.log(level, "%s from %s: %s (GOAWAY %s)", kind, self.peer, reason, code_name(code))
        self.goaway(self.highest, code, reason.encode()[:256])
        self.close(Trigger.FAIL, linger=True)

    def drain(self) -> None:
        """Begin a graceful close; nothing happens if one began already."""
        if not self.lifecycle.fire(Trigger.DRAIN):
            return
        if not self.settings_seen:
            # Nothing is known of the client yet: the drain goes on once its SETTINGS say what it is
            # (handshake_done). A GOAWAY naming stream 0 now would fail an httpx request already on
            # the wire (httpcore retries only above a last stream id that is not 0); the handshake
            # timeout, or shutdown's cut, ends a client that never sends its preface.
            return
        self._announce()

    def _announce(self) -> None:
        if self.strict:
            self.idle()
            return
        # The PING goes first: the client answers it after reading both, so its ACK still
        # means the GOAWAY was seen, and no client sees a PING after a GOAWAY.
        self._codec.ping(self._ping)
        self.goaway(MAX_STREAM_ID, ErrorCode.NO_ERROR)
        self._deadlines.arm(DRAIN, self._clock() + DRAIN_PING_TIMEOUT)

    def ping_acked(self, data: bytes) -> None:
        if data == self._ping:
            self.final()

    def drain_due(self) -> None:
        """The drain's deadline: the PING went unanswered, or a Python-h2 client's wait for a first request ended."""
        if self.strict and not self._is_idle():
            return  # a request came: the final GOAWAY goes out once it is done (idle)
        self.final()

    def final(self) -> None:
        """The final GOAWAY: the client has seen the first one (or took too long to say so)."""
        if not self.lifecycle.fire(Trigger.DRAINED):
            return
        self._deadlines.disarm(DRAIN)
        self.last_stream_id = self.highest
        self.goaway(self.last_stream_id, ErrorCode.NO_ERROR)
        self.idle()

    def peer_goaway(self, code: int) -> None:
        """The client's GOAWAY: with an error the connection is over, without one it opens no more streams."""
        if code:
            log.info("client %s sent GOAWAY %s: closing", self.peer, code_name(code))
            self.close(Trigger.FAIL, linger=False)  # the client is done: no GOAWAY of ours goes after its own
        elif self.lifecycle.fire(Trigger.PEER_GOAWAY):
            self._deadlines.disarm(DRAIN)
            self.idle()

    def idle(self) -> None:
        """Check, when the connection may have become idle, whether a close can go on."""
        if not self._is_idle():
            return
        phase = self.lifecycle.phase
        if phase is Phase.DRAINING and self.strict and self.settings_seen:
            if self.highest == 0 and not self._deadlines.armed(DRAIN):
                # No request yet: httpcore writes its first HEADERS after its SETTINGS, often in a
                # read of its own, and fails it on a GOAWAY naming stream 0. Give it a moment.
                self._deadlines.arm(DRAIN, self._clock() + FIRST_REQUEST_WAIT)
                return
            self.final()
        elif phase is Phase.CLOSING and self.lifecycle.fire(Trigger.IDLE):
            self._enter_closed(linger=True)

    def goaway(self, last_stream_id: int, code: int, debug: bytes = b"") -> None:
        """Queue a GOAWAY; after the final one (any but a drain's first) nothing more goes out."""
        if self._final_sent:
            return
        self._final_sent = last_stream_id != MAX_STREAM_ID or code != ErrorCode.NO_ERROR
        self._codec.goaway(last_stream_id, code, debug)
        metrics.recorder.goaway_sent(code)
        self._wake()

    def close(self, trigger: Trigger, *, linger: bool) -> None:
        if self.lifecycle.fire(trigger):
            self._enter_closed(linger=linger)

    def _enter_closed(self, *, linger: bool) -> None:
        """CLOSED: nothing more is timed; the streams learn their connection is gone; the driver closes."""
        self.linger = linger
        self._deadlines.clear()
        self._on_closed()
        if self._ended is not None:
            self._ended.set()
        self._wake()
