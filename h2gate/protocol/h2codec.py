"""The codec seam implemented with the ``h2`` library (the default codec).

h2 does the framing, HPACK, stream states and flow-control arithmetic; its
private-method overrides live in :mod:`h2gate.internals.h2conn`. This module
translates between h2's API and :mod:`h2gate.protocol.codec`'s contract:

* h2's events become the seam's events; a stream h2 reset on its own (a frame
  on a stream it had reset, a window overflow) becomes a
  :class:`~h2gate.protocol.codec.StreamProtocolError` with a reason in words;
* an h2 exception out of ``receive_data`` becomes a
  :class:`~h2gate.errors.ConnectionProtocolError` with a reason in words (h2's
  own text is often just a stream number), and the GOAWAY h2 queued for it is
  taken back: the core writes the one GOAWAY of the connection;
* a send on a stream h2 no longer has open raises
  :class:`~h2gate.protocol.codec.StreamGone` (checked up front, not caught from
  h2's depths), whatever state h2's connection is in;
* GOAWAY, PING, RST_STREAM on streams h2 does not track, and the frame API's
  raw bytes are written around h2 (in order), so h2's state machine stays open
  for the streams still being answered after a graceful GOAWAY.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import h2.config
import h2.events
import h2.exceptions
import h2.settings
from h2.connection import ConnectionState
from h2.settings import SettingCodes
from hpack.exceptions import HPACKError, OversizedHeaderListError
from hyperframe.frame import GoAwayFrame, PingFrame, RstStreamFrame

from h2gate.compiled import caused
from h2gate.errors import ConnectionProtocolError, ErrorCode
from h2gate.http.head import Headers
from h2gate.internals.h2conn import SETTINGS_NO_RFC7540_PRIORITIES, LocalSettings, ServerH2Connection
from h2gate.protocol import codec as seam

_GOAWAY_TYPE = 0x7
_H2_GOAWAY_SIZE = 9 + 8  # h2's own GOAWAY carries no debug data
_SETTINGS_ENABLE_CONNECT_PROTOCOL = 0x8
_CLOSED = ConnectionState.CLOSED
_INITIAL_WINDOW = SettingCodes.INITIAL_WINDOW_SIZE


def _stream_reason(code: int) -> str:
    if code == ErrorCode.STREAM_CLOSED:
        return "frame on a stream that was already closed"
    if code == ErrorCode.FLOW_CONTROL_ERROR:
        return "WINDOW_UPDATE overflowed the stream's send window"
    return "stream error"


def connection_error(exc: h2.exceptions.ProtocolError) -> ConnectionProtocolError:
    """h2's exception as our connection error, with the RFC's code and a reason in words."""
    try:  # not ErrorCode.of: a mypyc build gets its ErrorCode | int back as a bare int (bench/mypyc_tree.py)
        code = ErrorCode(getattr(exc, "error_code", ErrorCode.PROTOCOL_ERROR))
    except ValueError:  # a code RFC 9113 does not name; a connection error needs one it does
        code = ErrorCode.PROTOCOL_ERROR
    cause = exc.__cause__
    text = str(exc)
    if isinstance(cause, HPACKError) and not isinstance(cause, OversizedHeaderListError):
        # An undecodable header block is COMPRESSION_ERROR (RFC 9113 §4.3); h2 says PROTOCOL_ERROR.
        code, text = ErrorCode.COMPRESSION_ERROR, f"undecodable header block ({cause})"
    elif isinstance(cause, OversizedHeaderListError):
        text = "header list larger than SETTINGS_MAX_HEADER_LIST_SIZE"
    elif isinstance(exc, h2.exceptions.StreamClosedError):
        text = f"frame on stream {exc.stream_id} after it was closed"
    elif isinstance(exc, h2.exceptions.StreamIDTooLowError):
        text = f"stream {exc.stream_id} opened below the highest stream id {exc.max_stream_id}"
    elif isinstance(exc, h2.exceptions.NoSuchStreamError):
        text = f"frame on stream {exc.stream_id}, which is not open"
    elif text.isdigit() or not text:
        text = f"{type(exc).__name__} ({text or 'no detail'})"
    return ConnectionProtocolError(text, code)


def _request(ev: Any) -> seam.Event:
    # h2 makes a new list for every event (H2Stream._process_received_headers): no copy needed.
    return seam.RequestReceived(ev.stream_id, ev.headers, ev.stream_ended is not None)


def _data(ev: Any) -> seam.Event:
    return seam.DataReceived(ev.stream_id, ev.data, ev.flow_controlled_length, ev.stream_ended is not None)


def _trailers(ev: Any) -> seam.Event:
    return seam.TrailersReceived(ev.stream_id, list(ev.headers))


def _ended(ev: Any) -> seam.Event:
    return seam.StreamEnded(ev.stream_id)


def _reset(ev: Any) -> seam.Event:
    code = int(ev.error_code)
    if ev.remote_reset:
        return seam.StreamReset(ev.stream_id, code)
    return seam.StreamProtocolError(ev.stream_id, code, _stream_reason(code))


def _window(ev: Any) -> seam.Event:
    return seam.WindowUpdated(ev.stream_id)


def _settings(ev: Any) -> seam.Event:
    changed = ev.changed_settings
    return seam.SettingsReceived(_INITIAL_WINDOW in changed, tuple(int(code) for code in changed))


def _ping(ev: Any) -> seam.Event:
    return seam.PingReceived()


def _ping_ack(ev: Any) -> seam.Event:
    return seam.PingAcked(bytes(ev.ping_data or b""))


def _goaway(ev: Any) -> seam.Event:
    return seam.GoAwayReceived(int(ev.error_code or 0), int(ev.last_stream_id or 0))


_TRANSLATE: dict[type, Callable[[Any], seam.Event]] = {
    h2.events.RequestReceived: _request,
    h2.events.DataReceived: _data,
    h2.events.TrailersReceived: _trailers,
    h2.events.StreamEnded: _ended,
    h2.events.StreamReset: _reset,
    h2.events.WindowUpdated: _window,
    h2.events.RemoteSettingsChanged: _settings,
    h2.events.PingReceived: _ping,
    h2.events.PingAckReceived: _ping_ack,
    h2.events.ConnectionTerminated: _goaway,
}


class H2Codec:
    """One connection's HTTP/2 state, kept by h2 (see the module docstring)."""

    __slots__ = ("_extra", "_h2", "_raw")

    def __init__(self) -> None:
        # Header validation is ours (h2gate.http.validate): h2 would make a malformed request a
        # connection error, RFC 9113 §8.1.1 makes it a stream error.
        self._h2 = ServerH2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding=None, validate_inbound_headers=False)
        )
        self._h2.on_priority_update = self._priority_update
        self._extra: list[seam.Event] = []  # PRIORITY_UPDATEs met while h2 parsed the current bytes
        self._raw: list[bytes] = []  # output written around h2 (GOAWAY, PING, raw frames), in order

    def initiate(self, settings: seam.LocalSettings, upgrade_settings: bytes | None = None) -> None:
        conn = self._h2
        values: dict[int, int] = {
            SettingCodes.MAX_CONCURRENT_STREAMS: settings.max_concurrent_streams,
            SettingCodes.INITIAL_WINDOW_SIZE: settings.initial_window_size,
            SettingCodes.MAX_HEADER_LIST_SIZE: settings.max_header_list_size,
            SettingCodes.MAX_FRAME_SIZE: settings.max_frame_size,
            SettingCodes.ENABLE_PUSH: 0,
            _SETTINGS_ENABLE_CONNECT_PROTOCOL: int(settings.enable_connect_protocol),
            SETTINGS_NO_RFC7540_PRIORITIES: 1,  # RFC 9218 §2.1: we schedule by h2gate.protocol.priority
        }
        conn.local_settings = LocalSettings(client=False, initial_values=values)
        conn.max_inbound_frame_size = settings.max_frame_size
        conn.decoder.max_header_list_size = settings.max_header_list_size
        if upgrade_settings is None:
            conn.initiate_connection()
        else:
            # Applies the client's HTTP2-Settings and opens stream 1 half-closed (remote).
            conn.initiate_upgrade_connection(upgrade_settings)
            conn.upgraded = True
        extra = settings.connection_window_size - conn.inbound_flow_control_window
        if extra > 0:
            conn.increment_flow_control_window(extra)

    # -- receiving -------------------------------------------------------------------------------

    def receive(self, data: seam.Buffer) -> list[seam.Event]:
        try:
            events = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self._extra.clear()
            self._take_back_goaway()
            raise caused(connection_error(exc), exc)
        out = [translate(ev) for ev in events if (translate := _TRANSLATE.get(type(ev))) is not None]
        if self._extra:
            out += self._extra
            self._extra = []
        return out

    def _priority_update(self, stream_id: int, value: bytes) -> None:
        self._extra.append(seam.PriorityUpdated(stream_id, value))

    def _take_back_goaway(self) -> None:
        """h2 queued a GOAWAY of its own as it raised: keep everything before it, drop it."""
        data = self._h2.data_to_send()
        if len(data) >= _H2_GOAWAY_SIZE and data[-_H2_GOAWAY_SIZE + 3] == _GOAWAY_TYPE:
            data = data[:-_H2_GOAWAY_SIZE]
        if data:
            self._raw.append(data)

    # -- output ------------------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        if not self._raw:
            return self._h2.data_to_send()
        self._raw.append(self._h2.data_to_send())
        data = b"".join(self._raw)
        self._raw.clear()
        return data

    def _write_around(self, data: bytes) -> None:
        """Queue ``data`` after everything h2 queued so far, without h2 seeing it."""
        pending = self._h2.data_to_send()
        if pending:
            self._raw.append(pending)
        self._raw.append(data)

    def write_raw(self, data: bytes) -> None:
        self._write_around(data)

    def encode_block(self, headers: Headers) -> bytes:
        return bytes(self._h2.encoder.encode(headers))

    # -- sending -------------------------------------------------------------------------------------

    def _open_stream(self, stream_id: int) -> None:
        """Raise StreamGone unless h2 has ``stream_id`` open for sending and is itself open."""
        conn = self._h2
        stream = conn.streams.get(stream_id)
        if stream is None or stream.closed or conn.state_machine.state is _CLOSED:
            raise seam.StreamGone(stream_id)

    def send_headers(self, stream_id: int, headers: Headers, end_stream: bool) -> None:
        self._open_stream(stream_id)
        try:
            self._h2.send_checked_headers(stream_id, headers, end_stream)
        except h2.exceptions.ProtocolError:
            raise caused(seam.StreamGone(stream_id), None)

    def _send_unchecked(self, stream_id: int, headers: Headers, end_stream: bool) -> None:
        """h2's send_headers with its outbound checks off (the block was checked by h2gate.http)."""
        self._open_stream(stream_id)
        config = self._h2.config
        config.normalize_outbound_headers = config.validate_outbound_headers = False
        try:
            self._h2.send_headers(stream_id, headers, end_stream=end_stream)
        except h2.exceptions.ProtocolError:
            raise caused(seam.StreamGone(stream_id), None)
        finally:
            config.normalize_outbound_headers = config.validate_outbound_headers = True

    def send_informational(self, stream_id: int, headers: Headers) -> None:
        self._send_unchecked(stream_id, headers, False)

    def send_trailers(self, stream_id: int, headers: Headers) -> None:
        self._send_unchecked(stream_id, headers, True)

    def send_data(self, stream_id: int, data: seam.Buffer, end_stream: bool) -> None:
        conn = self._h2
        self._open_stream(stream_id)
        try:
            if conn.queue_data(stream_id, data, end_stream=end_stream):
                return
            view = memoryview(data)
            step, total, offset = conn.max_outbound_frame_size, len(view), 0
            while True:
                chunk = view[offset : offset + step]
                offset += len(chunk)
                last = offset >= total
                h2.connection.H2Connection.send_data(conn, stream_id, chunk, end_stream=end_stream and last)
                if last:
                    return
        except h2.exceptions.ProtocolError:
            raise caused(seam.StreamGone(stream_id), None)

    def end_stream(self, stream_id: int) -> None:
        self._open_stream(stream_id)
        try:
            self._h2.end_stream(stream_id)
        except h2.exceptions.ProtocolError:
            raise caused(seam.StreamGone(stream_id), None)

    def reset(self, stream_id: int, code: int) -> None:
        conn = self._h2
        stream = conn.streams.get(stream_id)
        if stream is not None and not stream.closed and conn.state_machine.state is not _CLOSED:
            try:
                conn.reset_stream(stream_id, code)
                return
            except h2.exceptions.ProtocolError:
                pass
        # Idle, closed, or h2 itself closed: a raw frame leaves h2's state alone.
        frame = RstStreamFrame(stream_id)
        frame.error_code = code
        self._write_around(frame.serialize())

    def goaway(self, last_stream_id: int, code: int, debug: bytes = b"") -> None:
        frame = GoAwayFrame(0)
        frame.last_stream_id = last_stream_id
        frame.error_code = code
        frame.additional_data = debug
        self._write_around(frame.serialize())

    def ping(self, data: bytes) -> None:
        self._write_around(PingFrame(0, opaque_data=data).serialize())

    def push(self, stream_id: int, headers: Headers) -> int:
        self._open_stream(stream_id)
        conn = self._h2
        try:
            promised: int = conn.get_next_available_stream_id()
            conn.push_stream(stream_id, promised, headers)
        except h2.exceptions.ProtocolError as exc:  # push disabled since, stream limit, stream ended
            raise caused(seam.StreamGone(stream_id), exc)
        return promised

    # -- flow control and state ----------------------------------------------------------------------

    def acknowledge(self, stream_id: int, size: int) -> None:
        if size and self._h2.state_machine.state is not _CLOSED:
            self._h2.acknowledge_received_data(size, stream_id)

    def set_receive_window(self, stream_id: int, size: int) -> None:
        if self._h2.state_machine.state is not _CLOSED:
            self._h2.set_inbound_window(stream_id, size)

    def window(self, stream_id: int) -> int:
        try:
            return int(self._h2.local_flow_control_window(stream_id))
        except h2.exceptions.ProtocolError:
            raise caused(seam.StreamGone(stream_id), None)

    @property
    def max_frame_size(self) -> int:
        return int(self._h2.max_outbound_frame_size)

    @property
    def inbound_window(self) -> int:
        return int(self._h2.inbound_flow_control_window)

    @property
    def peer_allows_push(self) -> bool:
        return bool(self._h2.remote_settings.enable_push)

    def is_open(self, stream_id: int) -> bool:
        stream = self._h2.streams.get(stream_id)
        return stream is not None and not stream.closed

    def release(self) -> None:
        self._h2.forget_closed_streams()
