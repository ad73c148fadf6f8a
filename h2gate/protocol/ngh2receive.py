"""The receiving half of the ngh2 codec: bytes in, libnghttp2's events out as the seam's.

Theory of operation. :class:`Ngh2Receiver` holds the session's state and is
the base of :class:`~h2gate.protocol.ngh2codec.Ngh2Codec`, which adds the
commands (that module's docstring has the whole codec's theory: output is
drained once per batch, and the drain lives here because the closes it
reports are part of what this half remembers). A read goes through
libnghttp2 in one call; what it tells is translated event by event, and
where libnghttp2 answers differently from the h2 codec, or stays silent,
this half answers itself:

* **Streams libnghttp2 resets itself** (a malformed request, RFC 9113
  §8.1.1-8.3; DATA on a closed stream; a stream window overflow) are told only
  by a ``StreamClosed`` with an error code once the RST_STREAM was drained,
  and a malformed request never appears. :meth:`Ngh2Receiver.receive` drains
  after every read, so such a close comes out of the same read as a
  :class:`~h2gate.protocol.codec.StreamProtocolError`. A close right after the
  client's own RST_STREAM is that reset; our own resets are drained (and their
  closes consumed) when we make them.
* **DATA after a close.** libnghttp2 forgets a stream once it closes and then
  drops DATA on it silently, where RFC 9113 §6.1 asks for STREAM_CLOSED. The
  codec remembers how the last few streams closed and follows the client's
  frame boundaries (:class:`~h2gate.protocol.rawframes.FrameWalker`, headers
  only): DATA on a stream both sides ended is a connection error
  STREAM_CLOSED, after the client's RST_STREAM a stream error, after ours
  ignored (§5.1). Such a frame is judged after the bytes before it went in.
* **Connection errors.** ngh2 raises from ``receive_data`` for floods it counts
  (and then hands out nothing more); for other errors libnghttp2 queues a
  GOAWAY of its own and reports ``ConnectionClosed``. Either way the GOAWAY is
  not ours: it is taken back, :class:`~h2gate.errors.ConnectionProtocolError`
  is raised, and the core writes the connection's one GOAWAY (as raw bytes:
  the session is done).
"""

from __future__ import annotations

import ngh2

from h2gate.compiled import caused
from h2gate.errors import ConnectionProtocolError, ErrorCode
from h2gate.protocol import codec as seam
from h2gate.protocol.framecheck import PREFACE
from h2gate.protocol.ngh2setup import (
    ENABLE_PUSH,
    INITIAL_WINDOW,
    STATE_ERRORS,
    closed_error,
    raised_error,
    reset_by_codec,
)
from h2gate.protocol.rawframes import FrameWalker, rst_stream_frame, without_last_goaway

_DATA_TYPE, _HEADERS_TYPE, _GOAWAY_TYPE = 0x0, 0x1, 0x7
RST_STREAM_TYPE = 0x3
#: How a stream closed, remembered for the last _CLOSED_MEMORY streams at least (DATA after a close).
ENDED, CLIENT_RESET, OUR_RESET, CODEC_RESET = 0, 1, 2, 3
_CLOSED_MEMORY = 256
#: The events of every read, looked up once.
_RequestReceived = ngh2.RequestReceived
_DataReceived = ngh2.DataReceived
_StreamClosed = ngh2.StreamClosed
_WindowUpdated = ngh2.WindowUpdated
_GoAwayReceived = ngh2.GoAwayReceived
_ConnectionClosed = ngh2.ConnectionClosed


class Ngh2Receiver:
    """The receiving half of :class:`~h2gate.protocol.ngh2codec.Ngh2Codec`: reads, events, and what closes."""

    __slots__ = ("_closed", "_conn", "_dead", "_dirty", "_ended", "_highest", "_out", "_push", "_walker")

    _conn: ngh2.Connection

    def __init__(self) -> None:
        self._out: list[bytes] = []  # drained frames and raw bytes, in order
        self._dead = False  # a connection error ended the session: only raw frames from now on
        self._dirty = False  # a command queued frames in libnghttp2 that _drain has not taken yet
        self._push = True  # the client's SETTINGS_ENABLE_PUSH
        self._walker = FrameWalker(skip=len(PREFACE))  # the client's frame boundaries (DATA after a close)
        #: How the last few streams closed (ENDED, CLIENT_RESET, ...): libnghttp2 forgets at once.
        self._closed: dict[int, int] = {}
        self._ended: set[int] = set()  # open streams whose request has ended (half-closed, remote)
        self._highest = 0  # the highest stream id of the client's HEADERS so far

    # -- receiving -------------------------------------------------------------------------------

    def receive(self, data: seam.Buffer) -> list[seam.Event]:
        if self._dirty:
            self._drain()  # our frames first; the closes they cause count for the frames read now
        suspects = self._suspects(self._walker.heads(data))
        if not suspects:
            return self._receive(data)
        # DATA on a stream that is (or may by then be) closed: judged once the bytes before it are in.
        events: list[seam.Event] = []
        view, start = memoryview(data), 0
        for offset, kind, stream_id in suspects:
            if offset > start:
                events += self._receive(view[start:offset])
                start = offset
            if kind != _GOAWAY_TYPE:
                events += self._after_close(kind, stream_id)
            elif offset + 13 <= len(view) and view[offset + 12] & 1:
                # The client's GOAWAY naming one of its own streams: libnghttp2 calls that PROTOCOL_ERROR,
                # h2 takes it. A client's last stream id counts our pushes (§6.8), and we sent none: 0.
                events += self._receive(bytes(view[offset : offset + 9]) + bytes(4))
                start = offset + 13
        return events + self._receive(view[start:])

    def _suspects(self, heads: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int]]:
        """The frames of a read libnghttp2 would drop unanswered: (offset, type, stream id).

        DATA on a stream closed before the read or reset by the client earlier in it; HEADERS on
        a stream id already used (libnghttp2 ignores those, in case they are trailers racing our
        RST_STREAM).
        """
        closed, found, highest = self._closed, [], self._highest
        reset_now: set[int] = set()
        for offset, kind, _flags, stream_id in heads:
            if kind == _DATA_TYPE:
                if stream_id in closed or stream_id in reset_now:
                    found.append((offset, kind, stream_id))
            elif kind == _HEADERS_TYPE:
                if stream_id > highest:
                    highest = stream_id
                elif stream_id:
                    found.append((offset, kind, stream_id))
            elif kind == RST_STREAM_TYPE:
                reset_now.add(stream_id)
            elif kind == _GOAWAY_TYPE:
                found.append((offset, kind, stream_id))
        self._highest = highest
        return found

    def _after_close(self, kind: int, stream_id: int) -> list[seam.Event]:
        """RFC 9113 §5.1 for a frame on a closed stream, which libnghttp2 drops once it forgot the stream.

        After both END_STREAMs: a connection error STREAM_CLOSED (as the h2 codec answers). After the
        client's RST_STREAM: a stream error STREAM_CLOSED. After our own RST_STREAM: ignored, as §5.1
        asks (frames may still be in flight). HEADERS on a stream id never opened (lower than one
        already used) is a connection error PROTOCOL_ERROR (§5.1.1). The frame still goes to
        libnghttp2, which counts DATA against the connection's window and decodes HEADERS.
        """
        how = self._closed.get(stream_id)
        if how is None:
            if kind == _DATA_TYPE or self.is_open(stream_id):
                return []
            self._dead = True
            raise ConnectionProtocolError(f"HEADERS on stream {stream_id}, lower than one already used",
                                          ErrorCode.PROTOCOL_ERROR)  # fmt: skip
        if how == ENDED:
            self._dead = True
            raise ConnectionProtocolError(f"frame on stream {stream_id} after it was closed", ErrorCode.STREAM_CLOSED)
        if how == CLIENT_RESET:
            self._out.append(rst_stream_frame(stream_id, ErrorCode.STREAM_CLOSED))
            what = "DATA" if kind == _DATA_TYPE else "HEADERS"
            return [
                seam.StreamProtocolError(stream_id, ErrorCode.STREAM_CLOSED, f"{what} after the client's RST_STREAM")
            ]
        return []

    def _closed_now(self, stream_id: int, how: int) -> None:
        """Remember how ``stream_id`` closed (the first reason wins), for the last few streams only."""
        self._ended.discard(stream_id)
        closed = self._closed
        if stream_id not in closed:
            closed[stream_id] = how
            if len(closed) >= 2 * _CLOSED_MEMORY:  # forgotten in batches: a dict is dear to pop from the front
                self._closed = dict(list(closed.items())[-_CLOSED_MEMORY:])

    def _receive(self, data: seam.Buffer) -> list[seam.Event]:
        conn = self._conn
        try:
            conn.receive_data(data)
        except (ngh2.ConnectionStateError, ngh2.ConnectionClosingError):
            return []  # libnghttp2 is winding down after our final GOAWAY: nothing more to read
        except ngh2.NGH2Error as exc:
            self._dead = True
            raise caused(raised_error(exc), None)
        try:
            out = conn.data_to_send()
            events = conn.events()
        except STATE_ERRORS:
            return []
        if _ConnectionClosed in set(map(type, events)):  # one pass in C for the usual read without it
            for event in events:
                if type(event) is _GoAwayReceived:
                    break  # a close after the client's GOAWAY is the client's: the core has its event
                if type(event) is _ConnectionClosed and event.error_code:
                    self._dead = True
                    self._out.append(without_last_goaway(out))  # the connection's GOAWAY is the core's
                    raise closed_error(event)
        if out:
            self._out.append(out)
        return self._translate(events)

    def _translate(self, events: list[ngh2.Event]) -> list[seam.Event]:
        out: list[seam.Event] = []
        reset = 0  # the stream the client reset just now: its close is that reset
        ended_streams = self._ended
        # By exact type, the usual events first (ngh2's event classes have no subclasses).
        for event in events:
            if type(event) is _RequestReceived:
                sid, ended = event.stream_id, event.end_stream
                out.append(seam.RequestReceived(sid, list(event.headers), ended))
                if ended:
                    ended_streams.add(sid)
                    out.append(seam.StreamEnded(sid))
            elif type(event) is _DataReceived:
                # Padding is libnghttp2's to give back: what the core acknowledges is the data itself.
                data, ended = event.data, event.end_stream
                out.append(seam.DataReceived(event.stream_id, data, len(data), ended))
                if ended:
                    ended_streams.add(event.stream_id)
                    out.append(seam.StreamEnded(event.stream_id))
            elif type(event) is _StreamClosed:
                sid = event.stream_id
                if event.error_code and sid != reset:  # else finished, or the client's reset
                    self._closed_now(sid, CODEC_RESET)
                    out.append(reset_by_codec(event))
                else:
                    self._closed_now(sid, ENDED)  # a no-op after the client's reset
            elif type(event) is _WindowUpdated:
                out.append(seam.WindowUpdated(event.stream_id))
            elif type(event) is ngh2.StreamReset:
                reset = event.stream_id
                self._closed_now(reset, CLIENT_RESET)
                out.append(seam.StreamReset(reset, event.error_code))
            elif type(event) is ngh2.TrailersReceived:
                out.append(seam.TrailersReceived(event.stream_id, list(event.headers)))
                ended_streams.add(event.stream_id)
                out.append(seam.StreamEnded(event.stream_id))
            elif type(event) is ngh2.SettingsReceived:
                changed = event.settings
                if ENABLE_PUSH in changed:
                    self._push = bool(changed[ENABLE_PUSH])
                out.append(seam.SettingsReceived(INITIAL_WINDOW in changed, tuple(changed)))
            elif type(event) is ngh2.PingReceived:
                out.append(seam.PingReceived())
            elif type(event) is ngh2.PingAcknowledged:
                out.append(seam.PingAcked(event.opaque_data))
            elif type(event) is _GoAwayReceived:
                out.append(seam.GoAwayReceived(event.error_code, event.last_stream_id))
            elif type(event) is ngh2.PriorityUpdateReceived:
                out.append(seam.PriorityUpdated(event.prioritized_stream_id, event.field_value))
            # SettingsAcknowledged, ALTSVC, ORIGIN, a clean ConnectionClosed: nothing for the core
        return out

    # -- what libnghttp2 queued, and the state it changes ---------------------------------------

    def _drain(self) -> None:
        """Take what libnghttp2 queued; the closes it reports then are our own doing (module docstring)."""
        self._dirty = False
        conn = self._conn
        try:
            data = conn.data_to_send()
            events = conn.events()
        except STATE_ERRORS:
            return
        if data:
            self._out.append(data)
        closed, ended = self._closed, self._ended
        for event in events:
            if type(event) is _StreamClosed:  # our END_STREAM or reset closed it: _closed_now, inline
                sid = event.stream_id
                ended.discard(sid)
                if sid not in closed:
                    closed[sid] = ENDED if not event.error_code else OUR_RESET
                    if len(closed) >= 2 * _CLOSED_MEMORY:
                        self._closed = closed = dict(list(closed.items())[-_CLOSED_MEMORY:])

    def is_open(self, stream_id: int) -> bool:
        if self._dirty:
            self._drain()  # a queued END_STREAM or RST_STREAM closes the stream once framed
        if self._dead:
            return False
        try:
            self._conn.stream_remote_window_size(stream_id)
        except STATE_ERRORS:
            return False
        return True
