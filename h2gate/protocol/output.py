"""The output half of the core: what it sends for its streams, how a stream's life ends, the writer's take.

Theory of operation. :class:`ConnectionOutput` sits between
:class:`~h2gate.protocol.control.ConnectionControl` and
:class:`~h2gate.protocol.core.ConnectionCore` in one line of bases. Its
methods run on the core's state, made in ``ConnectionCore.__init__`` (only
the slots of the three fields they write are declared here). The core keeps
the receiving side: the client's bytes, the per-request path and each
stream's events. Everything here is called the other way, by the streams and
the driver, or is what the receiving side hands on to be sent:

* :meth:`reset_stream`, the one way we reset a stream, with its charge
  against the reset budget (:meth:`_charge_reset`);
* :meth:`stream_finished` and :meth:`_forget`, the end of a stream's life
  (a stream ends by its task finishing or by a reset, so both live here),
  and :meth:`release`, the tables an idle connection gives back;
* :meth:`acknowledge` (WINDOW_UPDATE for body bytes an app consumed),
  :meth:`queued_data` and :meth:`write_raw` (what the writer will hold), and
  :meth:`data_to_send`, the writer's take, where the WINDOW_UPDATE budget is
  booked.

The cut is here because these methods are the core's answer to the app and
the writer rather than to the client: none of them reads a frame, and the
receiving side needs of them only :meth:`reset_stream`, :meth:`_forget` and
:meth:`_charge_reset`. A base class rather than a helper object: a stream's
``core.queued`` and ``core.queued_data`` stay one attribute away, as before.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from h2gate.errors import ErrorCode, code_name
from h2gate.observe import metrics
from h2gate.protocol.control import ConnectionControl
from h2gate.protocol.lifecycle import Phase
from h2gate.protocol.stream import Stream

if TYPE_CHECKING:
    from h2gate.protocol.signal import Signal

log = logging.getLogger("h2gate.error")


class ConnectionOutput(ConnectionControl):
    """The output methods of :class:`~h2gate.protocol.core.ConnectionCore` (see the module docstring)."""

    # The slots of the fields these methods assign (mypy checks a write against the slots of the class it is
    # written in); ConnectionCore.__init__ still makes them, and its own __slots__ has the rest.
    __slots__ = ("queued", "queued_frames", "streams")

    # The core's state these methods read besides what ConnectionControl declares, declared in the class body
    # for the compiled build, as ConnectionControl does.
    queued: int
    queued_frames: int
    streams_changed: Signal

    # -- the one reset path -------------------------------------------------------------------------------------

    def reset_stream(self, stream_id: int, code: int, why: str | None, *, charge: bool = False) -> None:
        """RST_STREAM ``code`` on ``stream_id``: the only way we reset a stream. Never raises.

        ``why`` is the log line's reason in words (None: no line, the caller's
        own doing such as an app fault or an early response); ``charge``: the
        client provoked it, so it counts against the reset budget (MadeYouReset).
        """
        stream = self.streams.get(stream_id)
        if stream is None or stream.reset_code is None:
            if why is not None:
                log.info("stream %d from %s: %s (RST_STREAM %s)", stream_id, self.peer, why, code_name(code))
            if not self.closed:
                self.codec.reset(stream_id, code)
                metrics.recorder.stream_reset("server", code)
                self.wake()
            self._forget(stream_id)
            if stream is not None:
                stream._on_reset(code)
                stream.cancel_app_soon()
        if charge:
            self._charge_reset()

    def _charge_reset(self) -> None:
        if self.guards.reset(self.clock()):
            self.fail(ErrorCode.ENHANCE_YOUR_CALM, "too many stream resets per second (rapid reset)")

    # -- a stream's end -------------------------------------------------------------------------------------------

    def stream_finished(self, stream: Stream) -> None:
        """The stream's task ended (the driver calls this exactly once per spawned stream)."""
        stream_id = stream.stream_id
        if not stream.state.done and stream.reset_code is None:
            self.reset_stream(stream_id, ErrorCode.CANCEL, None)
        streams = self.streams
        del streams[stream_id]
        self._forget(stream_id)
        self.deadlines.disarm(stream_id)
        self.turns.scheduler.forget(stream_id)
        metrics.recorder.stream_closed()
        self.streams_changed.fire()
        if self.closing.lifecycle.phase is not Phase.OPEN:
            self.closing.idle()
        elif not streams:
            self._arm_idle()

    def release(self) -> None:
        """The connection is idle (the driver says so): tables sized for its busiest moment start afresh.

        A dict that held entries keeps its table once emptied; thousands of idle
        connections each keeping the table of their last request add up
        (bench/README.md, "Idle connection memory").
        """
        if self.streams:
            return
        self.streams = {}
        self.codec.release()

    def _forget(self, stream_id: int) -> None:
        """The stream's budgets and its adaptive window are no longer needed."""
        self.guards.forget(stream_id)
        if self.windows is not None:
            self.windows.forget(stream_id)

    # -- output ---------------------------------------------------------------------------------------------------

    def acknowledge(self, stream_id: int, size: int) -> None:
        """The app consumed ``size`` body bytes of ``stream_id``: the client may send that much more."""
        if not self.closed:
            if self.windows is not None:
                self.windows.consumed(stream_id, size, self.clock())
            self.codec.acknowledge(stream_id, size)
            self.wake()

    def queued_data(self, size: int) -> None:
        """A stream queued ``size`` DATA bytes: count them against the writer's high-water mark.

        The WINDOW_UPDATEs they may earn the client are booked when the writer takes them
        (:meth:`data_to_send`), once a batch with one clock read: the client can answer
        only what has left.
        """
        self.queued += size
        self.queued_frames += size // 16_384 + 1

    def write_raw(self, data: bytes) -> None:
        """The frame API's raw bytes, after everything queued before them."""
        self.codec.write_raw(data)
        self.queued += len(data)
        self.wake()

    def data_to_send(self) -> bytes:
        """Everything queued for the client, in order (the driver's writer calls this)."""
        self.queued = 0
        frames = self.queued_frames
        if frames:
            self.queued_frames = 0
            self.guards.data_sent(self.clock(), frames)
        self.guards.flushed()
        return self.codec.data_to_send()
