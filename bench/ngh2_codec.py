"""Prototype: ngh2 (libnghttp2) behind the narrow codec interface the core will use. Not part of h2gate.

Run:  python bench/ngh2_codec.py      # an in-memory h2 client against it: every call of the interface once

Theory of operation. The core wants a codec that turns bytes into events and
commands into bytes, keeps no policy and opens no receive window by itself.
ngh2 is close to that already; what this adapter adds, and why:

* **One output buffer of our own.** ngh2 hands out its frames only from
  ``data_to_send()``, and it reports a stream it reset itself (a malformed
  request, RFC 9113 §8.2.1) only once that RST_STREAM was taken. So
  :meth:`receive` drains ngh2 into our buffer straight away and returns those
  late events with the rest; raw frames (:meth:`write_raw`) go in the same
  buffer after whatever came before, so order is kept.
* **Manual flow control.** ``auto_window_update=False``: credit goes back only
  through :meth:`acknowledge_received` (padding is ngh2's business). The
  connection window beyond 65,535 is opened once with
  ``set_local_window_size``.
* **Windows net of what is queued.** ngh2 queues body bytes that do not fit
  yet and charges the windows when it frames them; :meth:`window` subtracts
  what is queued (the stream's, and all of them from the connection's) so the
  core never hands over more than fits.
* **Errors.** ngh2 raises ``DenialOfServiceError`` (floods, CONTINUATION,
  header list) and ``ConnectionProtocolError`` from ``receive_data`` with
  nothing queued, and after that refuses to hand out bytes: that becomes
  :class:`ConnectionProtocolError` with the GOAWAY code for the core to send.
  A connection error ngh2 answers itself (FLOW_CONTROL_ERROR: GOAWAY queued,
  ``ConnectionClosed`` event) becomes the same exception with ``sent=True``.
  Sending on a stream that is gone raises :class:`StreamGone`.
* **What ngh2 cannot do.** No access to its HPACK encoder: :meth:`encode_block`
  (the frame API's raw HEADERS) encodes with literals that never touch the
  dynamic table, valid whatever the table holds. ngh2 enforces its own
  reset, PING/SETTINGS and CONTINUATION limits; the core keeps its own,
  tighter ones (it sees every frame first) so its codes and log lines stay
  the same whichever codec runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ngh2
from hpack import Encoder, NeverIndexedHeaderTuple

Headers = list[tuple[bytes, bytes]]
Buffer = bytes | bytearray | memoryview


class StreamGone(Exception):
    """A send command named a stream that is not open for sending."""


class ConnectionProtocolError(Exception):
    """A connection error: ``code`` for the GOAWAY; ``sent`` when the codec already queued it."""

    def __init__(self, code: int, reason: str, sent: bool = False) -> None:
        super().__init__(reason)
        self.code, self.reason, self.sent = code, reason, sent


# -- events (past tense, as the core's seam names them) ----------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestReceived:
    stream_id: int
    headers: Headers
    ended: bool


@dataclass(frozen=True, slots=True)
class DataReceived:
    stream_id: int
    data: bytes
    flow_length: int  # what acknowledge_received() gives back
    ended: bool


@dataclass(frozen=True, slots=True)
class TrailersReceived:
    stream_id: int
    headers: Headers


@dataclass(frozen=True, slots=True)
class StreamEnded:
    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamReset:
    stream_id: int
    code: int


@dataclass(frozen=True, slots=True)
class StreamProtocolError:
    """The codec reset a stream itself (RST_STREAM ``code`` already queued)."""

    stream_id: int
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class StreamClosed:
    """A stream is finished both ways; its state can go."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class WindowUpdated:
    stream_id: int


@dataclass(frozen=True, slots=True)
class SettingsReceived:
    settings: dict[int, int]


@dataclass(frozen=True, slots=True)
class PingAcked:
    data: bytes


@dataclass(frozen=True, slots=True)
class GoAwayReceived:
    code: int
    last_stream_id: int


@dataclass(frozen=True, slots=True)
class PriorityUpdated:
    stream_id: int
    value: bytes


ENHANCE_YOUR_CALM, PROTOCOL_ERROR = 0xB, 0x1


class Ngh2Codec:
    """One server connection's framing, HPACK and windows, through libnghttp2."""

    def __init__(self) -> None:
        self._conn = ngh2.Connection(ngh2.Role.SERVER, ngh2.Configuration(auto_window_update=False))
        self._out: list[bytes] = []
        self._open: set[int] = set()
        self._explained: set[int] = set()  # streams reset by the peer or by us: not ngh2's own doing
        self.highest_stream_id = 0

    # -- set-up and input --------------------------------------------------------------------------

    def initiate(self, settings: dict[int, int], connection_window: int) -> None:
        """Queue our SETTINGS (RFC 9113 ids) and open the connection window to ``connection_window``."""
        self._conn.initiate_connection(settings)
        if connection_window > 65_535:
            self._conn.set_local_window_size(connection_window)

    def receive(self, data: Buffer) -> list[Any]:
        """The events of ``data``, in order; raises ConnectionProtocolError on a connection error."""
        conn = self._conn
        try:
            conn.receive_data(data)
            raw = conn.events()
            self._drain()  # ngh2 tells of the streams it reset only once their RST_STREAM was taken
            raw += conn.events()
        except ngh2.DenialOfServiceError as exc:
            raise ConnectionProtocolError(ENHANCE_YOUR_CALM, str(exc)) from None
        except ngh2.ConnectionProtocolError as exc:
            raise ConnectionProtocolError(PROTOCOL_ERROR, str(exc)) from None
        return self._translate(raw)

    def _translate(self, raw: list[Any]) -> list[Any]:
        events: list[Any] = []
        for e in raw:
            kind = type(e)
            if kind is ngh2.RequestReceived:
                sid = e.stream_id
                self._open.add(sid)
                self.highest_stream_id = max(self.highest_stream_id, sid)
                events.append(RequestReceived(sid, list(e.headers), e.end_stream))
            elif kind is ngh2.DataReceived:
                size = len(e.data)
                if size:
                    events.append(DataReceived(e.stream_id, e.data, size, e.end_stream))
                elif e.end_stream:
                    events.append(StreamEnded(e.stream_id))
            elif kind is ngh2.TrailersReceived:
                events.append(TrailersReceived(e.stream_id, list(e.headers)))
            elif kind is ngh2.StreamReset:
                self._explained.add(e.stream_id)
                events.append(StreamReset(e.stream_id, e.error_code))
            elif kind is ngh2.StreamClosed:
                sid = e.stream_id
                self._open.discard(sid)
                if e.error_code and sid not in self._explained:
                    # reset by libnghttp2 itself: a malformed request (§8.2.1, §8.3) or body (§8.1.1)
                    why = str(e.local_error) if e.local_error is not None else "malformed request (libnghttp2)"
                    events.append(StreamProtocolError(sid, e.error_code, why))
                self._explained.discard(sid)
                events.append(StreamClosed(sid))
            elif kind is ngh2.WindowUpdated:
                events.append(WindowUpdated(e.stream_id))
            elif kind is ngh2.SettingsReceived:
                events.append(SettingsReceived(dict(e.settings)))
            elif kind is ngh2.PingAcknowledged:
                events.append(PingAcked(e.opaque_data))
            elif kind is ngh2.GoAwayReceived:
                events.append(GoAwayReceived(e.error_code, e.last_stream_id))
            elif kind is ngh2.PriorityUpdateReceived:
                events.append(PriorityUpdated(e.prioritized_stream_id, e.field_value))
            elif kind is ngh2.ConnectionClosed and e.error_code:
                raise ConnectionProtocolError(e.error_code, "libnghttp2 closed the connection", sent=True)
            # PingReceived / SettingsAcknowledged: ngh2 answered or noted them; nothing for the core
        return events

    # -- output ------------------------------------------------------------------------------------

    def _drain(self) -> None:
        try:
            chunk = self._conn.data_to_send()
        except ngh2.ConnectionStateError:
            return  # after a connection error ngh2 hands out nothing more: the core writes the GOAWAY
        if chunk:
            self._out.append(chunk)

    def data_to_send(self) -> bytes:
        self._drain()
        out, self._out = self._out, []
        return b"".join(out)

    def write_raw(self, data: bytes) -> None:
        self._drain()  # after everything queued before it
        self._out.append(data)

    def encode_block(self, headers: Headers) -> bytes:
        """A header block that never touches the dynamic table (ngh2's encoder is out of reach)."""
        return Encoder().encode([NeverIndexedHeaderTuple(n, v) for n, v in headers])

    # -- sending -----------------------------------------------------------------------------------

    def _stream_call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except (ngh2.StreamProtocolError, ngh2.StreamUnavailableError, ngh2.ConnectionClosingError) as exc:
            raise StreamGone(str(exc)) from None

    def send_headers(self, stream_id: int, headers: Headers, end_stream: bool) -> None:
        self._stream_call(self._conn.send_response, stream_id, headers, end_stream=end_stream)

    def send_informational(self, stream_id: int, headers: Headers) -> None:
        self._stream_call(self._conn.send_informational_response, stream_id, headers)

    def send_data(self, stream_id: int, data: Buffer, end_stream: bool) -> None:
        self._stream_call(self._conn.send_data, stream_id, data, end_stream=end_stream)

    def send_trailers(self, stream_id: int, headers: Headers) -> None:
        self._stream_call(self._conn.send_trailers, stream_id, headers)

    def end_stream(self, stream_id: int) -> None:
        self._stream_call(self._conn.end_stream, stream_id)

    def reset(self, stream_id: int, code: int) -> None:
        self._explained.add(stream_id)
        self._conn.reset_stream(stream_id, code)
        self._open.discard(stream_id)

    def goaway(self, last_stream_id: int, code: int, debug: bytes = b"") -> None:
        self._conn.send_goaway(code, last_stream_id=last_stream_id, debug_data=debug)

    def ping(self, data: bytes) -> None:
        self._conn.ping(data)

    def push(self, stream_id: int, headers: Headers) -> int:
        return int(self._stream_call(self._conn.send_push_promise, stream_id, headers))

    # -- flow control and state ---------------------------------------------------------------------

    def acknowledge_received(self, stream_id: int, size: int) -> None:
        """``size`` bytes of ``stream_id`` were consumed: WINDOW_UPDATE as libnghttp2 batches them."""
        try:
            self._conn.acknowledge_received_data(size, stream_id)
        except (ngh2.StreamProtocolError, ngh2.StreamUnavailableError):
            self._conn.acknowledge_received_data(size, 0)  # the stream is gone: the connection's share

    def window(self, stream_id: int) -> int:
        conn = self._conn
        try:
            stream = conn.stream_remote_window_size(stream_id) - conn.queued_body_size(stream_id)
        except ngh2.StreamUnavailableError:
            return 0
        return max(0, min(stream, conn.remote_window_size - conn.queued_body_size()))

    def is_open(self, stream_id: int) -> bool:
        return stream_id in self._open

    @property
    def pending(self) -> int:
        return sum(map(len, self._out))

    @property
    def inbound_window(self) -> int:
        return int(self._conn.local_window_size)

    @property
    def local_settings(self) -> dict[int, int]:
        """Our settings as the client has acknowledged them."""
        return dict(self._conn.local_settings)

    @property
    def remote_settings(self) -> dict[int, int]:
        return dict(self._conn.remote_settings)

    @property
    def max_frame_size(self) -> int:
        return self.remote_settings.get(0x5, 16_384)

    @property
    def peer_allows_push(self) -> bool:
        return bool(self.remote_settings.get(0x2, 1))


if __name__ == "__main__":
    import subprocess
    import sys
    from pathlib import Path

    raise SystemExit(subprocess.call([sys.executable, str(Path(__file__).with_name("ngh2_selfcheck.py"))]))
