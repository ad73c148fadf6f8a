"""The codec seam implemented with ngh2 (libnghttp2 through Cython): the optional native codec.

Theory of operation. libnghttp2 does the framing, HPACK, stream states,
flow-control arithmetic and RFC 9113's message checks in C; this module keeps
the seam's contract (:mod:`h2gate.protocol.codec`) on top of it:

* **Output is drained once per batch.** A command that queues a frame only
  marks libnghttp2's output as pending; it is taken (``data_to_send()``, its
  bytes appended to our own buffer) before anything that depends on it: the
  next read, a raw frame (so frames leave in the order the core made them,
  the frame API's included), :meth:`Ngh2Codec.data_to_send`, and the state
  queries that framing changes (:meth:`Ngh2Codec.is_open`, the inbound
  window). So the ten responses of a batch are framed in one call instead of
  twenty (bench/README.md, "Round three: the byte path"), and nothing queued
  is lost when a later read kills the session (ngh2 then hands out nothing
  more). libnghttp2 charges the send windows when it frames, so while output
  is pending :meth:`Ngh2Codec.window` subtracts the DATA bytes still queued
  (``queued_body_size``): the same figure a drain would leave, as with h2.
* **Streams libnghttp2 resets itself** (a malformed request, RFC 9113
  §8.1.1-8.3; DATA on a closed stream; a stream window overflow) are told only
  by a ``StreamClosed`` with an error code once the RST_STREAM was drained,
  and a malformed request never appears. :meth:`Ngh2Codec.receive` drains
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
* **Winding down.** Once our final GOAWAY is out and no stream is left,
  libnghttp2 refuses every call ("terminating"). Resets, PINGs and GOAWAYs
  then go out raw, acknowledgements and further reads are dropped, and send
  commands and :meth:`Ngh2Codec.window` say :class:`~h2gate.protocol.codec.StreamGone`.
* **Our limits stay in front.** The core sees every frame first
  (:mod:`h2gate.protocol.framecheck`) and keeps every budget, so libnghttp2's
  own limits are set above ours (resets, glitches, queued ACKs, CONTINUATIONs,
  SETTINGS entries) and its codes and reasons never replace ours. The header
  list size is libnghttp2's to enforce, at exactly our limit, as h2's decoder
  does. And it is never told our SETTINGS_MAX_CONCURRENT_STREAMS: past it,
  libnghttp2 ends the connection (PROTOCOL_ERROR) where RFC 9113 §5.1.2 asks
  for a stream error, so it is told "unlimited" and the value the client
  reads is written into our first SETTINGS frame on its way out; the core
  refuses the excess streams (REFUSED_STREAM), as it does with h2.
* **Inbound flow control is manual** (``auto_window_update=False``): credit
  goes back only through :meth:`Ngh2Codec.acknowledge`; libnghttp2 sends a
  WINDOW_UPDATE once half a window has been given back (fewer frames than h2,
  the same bound on buffered bytes).
* **HPACK for raw blocks.** libnghttp2's encoder is out of reach, so
  :meth:`Ngh2Codec.encode_block` (the frame API) encodes literals that never
  touch the dynamic table: valid whatever the table holds.
"""

from __future__ import annotations

import base64
from typing import NoReturn

import ngh2
from hpack import Encoder, NeverIndexedHeaderTuple

from h2gate.errors import ConnectionProtocolError, ErrorCode
from h2gate.http.head import Headers
from h2gate.protocol import codec as seam
from h2gate.protocol.framecheck import MAX_CONTINUATIONS, PREFACE
from h2gate.protocol.rawframes import (
    FrameWalker,
    end_stream_frame,
    goaway_frame,
    ping_frame,
    rst_stream_frame,
    set_setting,
    without_frame,
    without_last_goaway,
)

#: What libnghttp2 is told where only our own limit should apply (its counters never reach it).
_UNLIMITED = 2**31 - 1
_MAX_STREAM_ID = 2**31 - 1
_MAX_CONCURRENT_STREAMS, _ENABLE_PUSH, _INITIAL_WINDOW, _MAX_FRAME, _MAX_HEADER_LIST = 0x3, 0x2, 0x4, 0x5, 0x6
_ENABLE_CONNECT_PROTOCOL, _NO_RFC7540_PRIORITIES = 0x8, 0x9
_DATA_TYPE, _HEADERS_TYPE, _RST_STREAM_TYPE, _GOAWAY_TYPE = 0x0, 0x1, 0x3, 0x7
#: How a stream closed, remembered for the last _CLOSED_MEMORY streams at least (DATA after a close).
_ENDED, _CLIENT_RESET, _OUR_RESET, _CODEC_RESET = 0, 1, 2, 3
_CLOSED_MEMORY = 256
#: What ngh2 raises for a stream it no longer has, or once the session is over or winding down
#: ("Connection is terminating": our final GOAWAY sent and nothing left to read or write).
_STATE_ERRORS = (ngh2.StreamUnavailableError, ngh2.ConnectionStateError, ngh2.ConnectionClosingError)
_SEND_ERRORS = (ngh2.StreamProtocolError, ngh2.ConnectionStateError, ngh2.ConnectionClosingError)


def configuration(settings: seam.LocalSettings) -> ngh2.Configuration:
    """libnghttp2's limits for our settings: the header list at ours, every budget above the core's."""
    return ngh2.Configuration(
        auto_window_update=False,
        max_inbound_header_list_size=settings.max_header_list_size,
        max_inbound_header_count=settings.max_header_list_size // 32 + 1,  # a field costs at least 32
        max_continuations=MAX_CONTINUATIONS + 1,  # FrameCheck refuses more first
        max_settings=settings.max_frame_size // 6 + 1,  # as many as a frame can carry
        max_outbound_ack=_UNLIMITED,  # drained after every read; the core counts unread replies
        stream_reset_rate_limit=(_UNLIMITED, _UNLIMITED),  # the core's reset budget answers
        glitch_rate_limit=(_UNLIMITED, _UNLIMITED),  # the core's flood budgets answer
        max_send_header_block_length=16 * 1024 * 1024,
    )


def _stream_reason(code: int) -> str:
    if code == ErrorCode.STREAM_CLOSED:
        return "frame on a stream that was already closed"
    if code == ErrorCode.FLOW_CONTROL_ERROR:
        return "the stream's flow-control window was exceeded"
    if code == ErrorCode.REFUSED_STREAM:
        return "refused by libnghttp2"
    return "stream error"


def _reset_by_codec(event: ngh2.StreamClosed) -> seam.StreamProtocolError:
    """A stream libnghttp2 reset itself, in words (it names no field of a malformed request)."""
    code, sid = event.error_code, event.stream_id
    if event.local_error is not None:
        return seam.StreamProtocolError(sid, code, str(event.local_error).removeprefix("HTTP/2 engine error: "))
    if code == ErrorCode.PROTOCOL_ERROR:
        return seam.StreamProtocolError(sid, code, "refused by libnghttp2's checks of RFC 9113 §8.1-8.3", True)
    return seam.StreamProtocolError(sid, code, _stream_reason(code))


#: libnghttp2's words for the limits it counts itself, as the h2 codec words the same events.
_DOS_REASONS = (
    ("header list", "header list larger than SETTINGS_MAX_HEADER_LIST_SIZE"),
    ("CONTINUATION", "too many CONTINUATION frames (flood)"),
)


def _raised(exc: ngh2.NGH2Error) -> ConnectionProtocolError:
    """ngh2's exception out of ``receive_data`` as our connection error."""
    text = str(exc).removeprefix("HTTP/2 engine error: ")
    if isinstance(exc, ngh2.DenialOfServiceError):
        words = next((ours for key, ours in _DOS_REASONS if key in text), f"flood ({text})")
        return ConnectionProtocolError(words, ErrorCode.ENHANCE_YOUR_CALM)
    if isinstance(exc, ngh2.ConnectionProtocolError):
        return ConnectionProtocolError(text or "protocol error", ErrorCode.PROTOCOL_ERROR)
    return ConnectionProtocolError(f"libnghttp2 failed: {text}", ErrorCode.INTERNAL_ERROR)


def _closed(event: ngh2.ConnectionClosed) -> ConnectionProtocolError:
    """libnghttp2 ended the connection itself: its code, its reason if it gave one."""
    code = ErrorCode.of(event.error_code)
    text = event.debug_data.decode("ascii", "replace")
    if not text:
        reasons: dict[int, str] = {
            ErrorCode.FLOW_CONTROL_ERROR: "flow-control window exceeded or overflowed",
            ErrorCode.COMPRESSION_ERROR: "undecodable header block",
            ErrorCode.STREAM_CLOSED: "frame on a stream that was already closed",
            ErrorCode.FRAME_SIZE_ERROR: "frame of a size its type does not allow",
        }
        text = reasons.get(event.error_code, "protocol error")
    return ConnectionProtocolError(text, code if isinstance(code, ErrorCode) else ErrorCode.PROTOCOL_ERROR)


class Ngh2Codec:
    """One connection's HTTP/2 state, kept by libnghttp2 (see the module docstring)."""

    __slots__ = ("_closed", "_conn", "_dead", "_dirty", "_ended", "_highest", "_out", "_push", "_walker")

    _conn: ngh2.Connection

    def __init__(self) -> None:
        self._out: list[bytes] = []  # drained frames and raw bytes, in order
        self._dead = False  # a connection error ended the session: only raw frames from now on
        self._dirty = False  # a command queued frames in libnghttp2 that _drain has not taken yet
        self._push = True  # the client's SETTINGS_ENABLE_PUSH
        self._walker = FrameWalker(skip=len(PREFACE))  # the client's frame boundaries (DATA after a close)
        #: How the last few streams closed (_ENDED, _CLIENT_RESET, ...): libnghttp2 forgets at once.
        self._closed: dict[int, int] = {}
        self._ended: set[int] = set()  # open streams whose request has ended (half-closed, remote)
        self._highest = 0  # the highest stream id of the client's HEADERS so far

    def initiate(self, settings: seam.LocalSettings, upgrade_settings: bytes | None = None) -> None:
        ours = {
            _MAX_CONCURRENT_STREAMS: 0xFFFFFFFF,  # libnghttp2 is told "unlimited" (module docstring)
            _INITIAL_WINDOW: settings.initial_window_size,
            _MAX_HEADER_LIST: settings.max_header_list_size,
            _MAX_FRAME: settings.max_frame_size,
            _ENABLE_PUSH: 0,
            _ENABLE_CONNECT_PROTOCOL: int(settings.enable_connect_protocol),
            _NO_RFC7540_PRIORITIES: 1,  # RFC 9218 §2.1: we schedule by h2gate.protocol.priority
        }
        conn = self._conn = ngh2.Connection(ngh2.Role.SERVER, configuration(settings))
        if upgrade_settings is None:
            conn.initiate_connection(ours)
        else:
            # Applies the client's HTTP2-Settings and opens stream 1 half-closed (remote).
            # h2gate.net.negotiate checked the header (base64url, padding restored); libnghttp2 takes the payload.
            conn.initiate_upgrade(base64.urlsafe_b64decode(upgrade_settings), local_settings=ours)
            self._ended.add(1)
            self._highest = 1
        preface = set_setting(conn.data_to_send(), _MAX_CONCURRENT_STREAMS, settings.max_concurrent_streams)
        self._out.append(preface)
        if settings.connection_window_size > 65_535:
            conn.set_local_window_size(settings.connection_window_size)
            self._drain()

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
            elif kind == _RST_STREAM_TYPE:
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
        if how == _ENDED:
            self._dead = True
            raise ConnectionProtocolError(f"frame on stream {stream_id} after it was closed", ErrorCode.STREAM_CLOSED)
        if how == _CLIENT_RESET:
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
            raise _raised(exc) from None
        try:
            out = conn.data_to_send()
            events = conn.events()
        except _STATE_ERRORS:
            return []
        for event in events:
            if isinstance(event, ngh2.GoAwayReceived):
                break  # a close after the client's GOAWAY is the client's: the core has its event
            if isinstance(event, ngh2.ConnectionClosed) and event.error_code:
                self._dead = True
                self._out.append(without_last_goaway(out))  # the connection's GOAWAY is the core's
                raise _closed(event)
        if out:
            self._out.append(out)
        return self._translate(events)

    def _translate(self, events: list[ngh2.Event]) -> list[seam.Event]:
        out: list[seam.Event] = []
        reset = 0  # the stream the client reset just now: its close is that reset
        for event in events:
            if isinstance(event, ngh2.RequestReceived):
                sid, ended = event.stream_id, event.end_stream
                out.append(seam.RequestReceived(sid, list(event.headers), ended))
                if ended:
                    self._ended.add(sid)
                    out.append(seam.StreamEnded(sid))
            elif isinstance(event, ngh2.DataReceived):
                # Padding is libnghttp2's to give back: what the core acknowledges is the data itself.
                data, ended = event.data, event.end_stream
                out.append(seam.DataReceived(event.stream_id, data, len(data), ended))
                if ended:
                    self._ended.add(event.stream_id)
                    out.append(seam.StreamEnded(event.stream_id))
            elif isinstance(event, ngh2.StreamClosed):
                sid = event.stream_id
                if event.error_code and sid != reset:  # else finished, or the client's reset
                    self._closed_now(sid, _CODEC_RESET)
                    out.append(_reset_by_codec(event))
                else:
                    self._closed_now(sid, _ENDED)  # a no-op after the client's reset
            elif isinstance(event, ngh2.StreamReset):
                reset = event.stream_id
                self._closed_now(reset, _CLIENT_RESET)
                out.append(seam.StreamReset(reset, event.error_code))
            elif isinstance(event, ngh2.WindowUpdated):
                out.append(seam.WindowUpdated(event.stream_id))
            elif isinstance(event, ngh2.TrailersReceived):
                out.append(seam.TrailersReceived(event.stream_id, list(event.headers)))
                self._ended.add(event.stream_id)
                out.append(seam.StreamEnded(event.stream_id))
            elif isinstance(event, ngh2.SettingsReceived):
                changed = event.settings
                if _ENABLE_PUSH in changed:
                    self._push = bool(changed[_ENABLE_PUSH])
                out.append(seam.SettingsReceived(_INITIAL_WINDOW in changed, tuple(changed)))
            elif isinstance(event, ngh2.PingReceived):
                out.append(seam.PingReceived())
            elif isinstance(event, ngh2.PingAcknowledged):
                out.append(seam.PingAcked(event.opaque_data))
            elif isinstance(event, ngh2.GoAwayReceived):
                out.append(seam.GoAwayReceived(event.error_code, event.last_stream_id))
            elif isinstance(event, ngh2.PriorityUpdateReceived):
                out.append(seam.PriorityUpdated(event.prioritized_stream_id, event.field_value))
            # SettingsAcknowledged, ALTSVC, ORIGIN, a clean ConnectionClosed: nothing for the core
        return out

    # -- output ------------------------------------------------------------------------------------

    def _drain(self) -> None:
        """Take what libnghttp2 queued; the closes it reports then are our own doing (module docstring)."""
        self._dirty = False
        conn = self._conn
        try:
            data = conn.data_to_send()
            events = conn.events()
        except _STATE_ERRORS:
            return
        if data:
            self._out.append(data)
        for event in events:
            if type(event) is ngh2.StreamClosed:  # our END_STREAM or reset closed it
                self._closed_now(event.stream_id, _ENDED if not event.error_code else _OUR_RESET)

    def _raw(self, data: bytes) -> None:
        """Queue ``data`` as it is, after every frame the commands before it made."""
        if self._dirty:
            self._drain()
        self._out.append(data)

    def data_to_send(self) -> bytes:
        if self._dirty:
            self._drain()
        out = self._out
        if not out:
            return b""
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        return data

    def write_raw(self, data: bytes) -> None:
        self._raw(data)

    def encode_block(self, headers: Headers) -> bytes:
        return bytes(Encoder().encode([NeverIndexedHeaderTuple(name, value) for name, value in headers]))

    # -- sending -------------------------------------------------------------------------------------

    def _gone(self, stream_id: int) -> NoReturn:
        raise seam.StreamGone(stream_id)

    def send_headers(self, stream_id: int, headers: Headers, end_stream: bool) -> None:
        if self._dead:
            self._gone(stream_id)
        try:
            self._conn.send_response(stream_id, headers, end_stream=end_stream)
        except _SEND_ERRORS:
            self._gone(stream_id)
        self._dirty = True

    def send_informational(self, stream_id: int, headers: Headers) -> None:
        if self._dead:
            self._gone(stream_id)
        try:
            self._conn.send_informational_response(stream_id, headers)
        except _SEND_ERRORS:
            self._gone(stream_id)
        self._dirty = True

    def send_trailers(self, stream_id: int, headers: Headers) -> None:
        if self._dead:
            self._gone(stream_id)
        try:
            self._conn.send_trailers(stream_id, headers)
        except _SEND_ERRORS:
            self._gone(stream_id)
        self._dirty = True

    def send_data(self, stream_id: int, data: seam.Buffer, end_stream: bool) -> None:
        if self._dead:
            self._gone(stream_id)
        if end_stream and not data and stream_id in self._ended and self.window(stream_id) <= 0:
            self._end_stalled(stream_id)
            return
        try:
            self._conn.send_data(stream_id, data, end_stream=end_stream)
        except _SEND_ERRORS:
            self._gone(stream_id)
        self._dirty = True

    def end_stream(self, stream_id: int) -> None:
        self.send_data(stream_id, b"", True)

    def _end_stalled(self, stream_id: int) -> None:
        """The response's empty END_STREAM while a send window is 0, on a stream whose request has ended.

        libnghttp2 holds an empty DATA frame back until the window opens, which a client that
        has all it asked for may never do (RFC 9113 §6.9.1 lets it go: it carries no bytes). So
        the stream is closed in libnghttp2 by a reset whose RST_STREAM is taken back, and the
        empty DATA frame with END_STREAM goes out raw: the stream closed cleanly on the wire.
        """
        if self._dirty:
            self._drain()
        conn = self._conn
        conn.reset_stream(stream_id, ErrorCode.NO_ERROR)
        taken = without_frame(conn.data_to_send(), _RST_STREAM_TYPE, stream_id)
        if taken:
            self._out.append(taken)
        conn.events()  # the close of the reset
        self._closed_now(stream_id, _ENDED)
        self._ended.discard(stream_id)
        self._out.append(end_stream_frame(stream_id))

    def reset(self, stream_id: int, code: int) -> None:
        if not self._dead and self.is_open(stream_id):
            self._closed_now(stream_id, _OUR_RESET)  # even with NO_ERROR: the client's DATA may be in flight
            try:
                self._conn.reset_stream(stream_id, code)
            except _STATE_ERRORS:
                pass  # the frame goes raw, below
            else:
                self._dirty = True
                return
        # Idle, closed, or the session is done: libnghttp2 would drop the frame, so it goes raw.
        self._raw(rst_stream_frame(stream_id, code))

    def goaway(self, last_stream_id: int, code: int, debug: bytes = b"") -> None:
        try:
            if self._dead:
                raise ngh2.ConnectionStateError("the session is over")
            if last_stream_id == _MAX_STREAM_ID and code == ErrorCode.NO_ERROR and not debug:
                # A drain's first GOAWAY: libnghttp2 takes new streams after this one only.
                self._conn.send_shutdown_notice()
            else:
                # Through libnghttp2, so that it too ignores new streams from now on.
                self._conn.send_goaway(code, last_stream_id=last_stream_id, debug_data=debug)
        except _STATE_ERRORS:
            self._raw(goaway_frame(last_stream_id, code, debug))
            return
        self._dirty = True

    def ping(self, data: bytes) -> None:
        try:
            if self._dead:
                raise ngh2.ConnectionStateError("the session is over")
            self._conn.ping(data)
        except _STATE_ERRORS:
            self._raw(ping_frame(data))
            return
        self._dirty = True

    def push(self, stream_id: int, headers: Headers) -> int:
        if self._dead:
            self._gone(stream_id)
        try:
            promised = self._conn.send_push_promise(stream_id, headers)
        except (*_SEND_ERRORS, ngh2.NoAvailableStreamIDError) as exc:
            raise seam.StreamGone(stream_id) from exc
        self._dirty = True
        return promised

    # -- flow control and state ----------------------------------------------------------------------

    def acknowledge(self, stream_id: int, size: int) -> None:
        if size and not self._dead:
            try:
                self._conn.acknowledge_received_data(size, stream_id)
            except _STATE_ERRORS:
                return  # the stream or the session is gone: no window to give back
            self._dirty = True

    def set_receive_window(self, stream_id: int, size: int) -> None:
        # libnghttp2 opens a larger window at once and withholds credit down to a smaller one.
        if self._dead:
            return
        try:
            self._conn.set_local_window_size(size, stream_id=stream_id)
        except _STATE_ERRORS:
            return  # the stream or the session is gone: nothing left to size
        self._dirty = True

    def window(self, stream_id: int) -> int:
        if self._dead:
            self._gone(stream_id)
        conn = self._conn
        try:
            if not self._dirty:
                return max(0, min(conn.stream_remote_window_size(stream_id), conn.remote_window_size))
            # libnghttp2 charges the windows as it frames: what a drain would leave (module docstring).
            stream = conn.stream_remote_window_size(stream_id) - conn.queued_body_size(stream_id)
            return max(0, min(stream, conn.remote_window_size - conn.queued_body_size()))
        except _STATE_ERRORS:
            self._gone(stream_id)

    @property
    def max_frame_size(self) -> int:
        try:
            return 16_384 if self._dead else self._conn.remote_settings.get(_MAX_FRAME, 16_384)
        except _STATE_ERRORS:
            return 16_384

    @property
    def inbound_window(self) -> int:
        if self._dirty:
            self._drain()
        try:
            return 0 if self._dead else self._conn.local_window_size
        except _STATE_ERRORS:
            return 0

    @property
    def peer_allows_push(self) -> bool:
        return self._push and not self._dead

    def is_open(self, stream_id: int) -> bool:
        if self._dirty:
            self._drain()  # a queued END_STREAM or RST_STREAM closes the stream once framed
        if self._dead:
            return False
        try:
            self._conn.stream_remote_window_size(stream_id)
        except _STATE_ERRORS:
            return False
        return True

    def release(self) -> None:
        """Nothing to drop: libnghttp2 frees a closed stream itself."""
