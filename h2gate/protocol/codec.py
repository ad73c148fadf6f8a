"""The codec seam: the one narrow interface through which the core speaks HTTP/2 framing and HPACK.

Theory of operation. The core (:mod:`h2gate.protocol.core`) decides; a codec
encodes and decodes. A codec turns the client's bytes into the events below
(frames parsed, HPACK decoded, flow-control windows and stream states kept as
RFC 9113 says) and turns the core's commands into bytes waiting in its output
buffer. It never decides a policy: which streams to accept, when to reset,
what limits apply and what to log are the core's. Where a codec checks less
than h2gate promises (field validation, floods, sizes), the core checks the
rest before or after it; :mod:`h2gate.protocol.framecheck` sees every byte
before any codec does.

The contract every codec keeps:

* :meth:`Codec.receive` returns the events of the bytes given, in wire order,
  or raises :class:`~h2gate.errors.ConnectionProtocolError` with the GOAWAY
  code and a reason in words (the codec has queued nothing for it: the core
  writes the GOAWAY). Stream errors the codec detects come out as
  :class:`StreamProtocolError` events, already answered with RST_STREAM.
* Send commands on a stream the codec no longer knows as open (closed, reset,
  never opened) raise :class:`StreamGone`; nothing is queued then. They never
  raise anything else for the peer's doing.
* Inbound flow control is manual: the codec never opens a window by itself;
  :meth:`Codec.acknowledge` returns credit as the application consumes bytes,
  and :meth:`Codec.set_receive_window` resizes a window when the core's
  adaptive flow control (:mod:`h2gate.protocol.flowcontrol`) says so.
* Output accumulates until :meth:`Codec.data_to_send` takes it, in order.

:class:`h2gate.protocol.h2codec.H2Codec` implements this with the ``h2``
library (the default); :class:`h2gate.protocol.ngh2codec.Ngh2Codec` with
libnghttp2 (``pip install 'h2gate[fast]'``). Both pass the same conformance and
attack suites; :mod:`h2gate.protocol.codecs` picks one (``--codec``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from h2gate.compiled import mypyc_attr
from h2gate.http.head import Headers

Buffer = bytes | bytearray | memoryview


@mypyc_attr(native_class=False)  # (a subclass of an uncompiled class: h2gate/compiled.py)
class StreamGone(Exception):
    """A send command named a stream that is not open for sending (closed, reset or unknown)."""


# -- events: what the peer did, past tense ---------------------------------------------------------
#
# Read-only by convention, not frozen: a frozen dataclass sets each field through
# object.__setattr__, which makes its construction three times as dear (0.42 against
# 0.15 us for three fields), and a codec makes one or two of these per frame received.


@dataclass(slots=True)
class RequestReceived:
    """A request's header block (pseudo-header fields first, in wire order)."""

    stream_id: int
    headers: Headers
    ended: bool  # END_STREAM on the HEADERS: no body follows


@dataclass(slots=True)
class DataReceived:
    """Body bytes; ``flow_length`` counts padding too, and is what :meth:`Codec.acknowledge` gives back."""

    stream_id: int
    data: bytes
    flow_length: int
    ended: bool


@dataclass(slots=True)
class TrailersReceived:
    """The request's trailer section; a :class:`StreamEnded` follows (trailers always end the stream)."""

    stream_id: int
    headers: Headers


@dataclass(slots=True)
class StreamEnded:
    """The peer's END_STREAM; it follows the event of the frame that carried it (``ended`` there says so too)."""

    stream_id: int


@dataclass(slots=True)
class StreamReset:
    """The peer sent RST_STREAM."""

    stream_id: int
    code: int


@dataclass(slots=True)
class StreamProtocolError:
    """The codec found a stream error and has queued RST_STREAM ``code`` for it.

    ``malformed``: the codec refused a malformed request or trailer section (RFC 9113 §8.1.1)
    itself, so the request never came out as an event.
    """

    stream_id: int
    code: int
    reason: str
    malformed: bool = False


@dataclass(slots=True)
class WindowUpdated:
    """The peer opened a send window: ``stream_id`` 0 is the connection's."""

    stream_id: int


@dataclass(slots=True)
class SettingsReceived:
    """A SETTINGS frame from the peer, acknowledged by the codec; a new initial window changed every stream's."""

    initial_window_changed: bool
    ids: tuple[int, ...] = ()  # the setting identifiers in wire order (clients differ in them)


@dataclass(slots=True)
class PingReceived:
    """A PING the codec has answered with its ACK."""


@dataclass(slots=True)
class PingAcked:
    """The ACK of a PING we sent, with its opaque data."""

    data: bytes


@dataclass(slots=True)
class GoAwayReceived:
    """The peer's GOAWAY: with NO_ERROR it opens no more streams; with an error the connection is over."""

    code: int
    last_stream_id: int


@dataclass(slots=True)
class PriorityUpdated:
    """A well-formed PRIORITY_UPDATE (RFC 9218 §7.1) for ``stream_id``, with its field value."""

    stream_id: int
    value: bytes


Event = (
    RequestReceived
    | DataReceived
    | TrailersReceived
    | StreamEnded
    | StreamReset
    | StreamProtocolError
    | WindowUpdated
    | SettingsReceived
    | PingReceived
    | PingAcked
    | GoAwayReceived
    | PriorityUpdated
)


@dataclass(frozen=True, slots=True)
class LocalSettings:
    """What we advertise in our first SETTINGS, and how the codec enforces it."""

    max_concurrent_streams: int
    initial_window_size: int
    connection_window_size: int
    max_header_list_size: int
    max_frame_size: int
    enable_connect_protocol: bool


class Codec(Protocol):
    """One HTTP/2 connection's framing and HPACK state, server side."""

    def initiate(self, settings: LocalSettings, upgrade_settings: bytes | None = None) -> None:
        """Queue our preface (SETTINGS, connection window); ``upgrade_settings``: the h2c upgrade's HTTP2-Settings."""

    def receive(self, data: Buffer) -> list[Event]:
        """The events of ``data``; raises ConnectionProtocolError on a connection error."""

    def data_to_send(self) -> bytes:
        """Everything queued so far, in order; the buffer is empty afterwards."""

    # -- sending ------------------------------------------------------------------------------

    def send_headers(self, stream_id: int, headers: Headers, end_stream: bool) -> None:
        """A response header block already checked by h2gate.http (lowercase, no connection fields)."""

    def send_informational(self, stream_id: int, headers: Headers) -> None:
        """A 1xx block; the final response still follows."""

    def send_trailers(self, stream_id: int, headers: Headers) -> None:
        """A checked trailer block with END_STREAM."""

    def send_data(self, stream_id: int, data: Buffer, end_stream: bool) -> None:
        """``data`` as DATA frames; it must fit :meth:`window` (the core makes sure)."""

    def end_stream(self, stream_id: int) -> None:
        """END_STREAM on an empty DATA frame."""

    def reset(self, stream_id: int, code: int) -> None:
        """RST_STREAM; for a stream the codec does not know as open, the frame still goes out."""

    def goaway(self, last_stream_id: int, code: int, debug: bytes = b"") -> None:
        """A GOAWAY frame; the codec keeps serving the streams at or below ``last_stream_id``."""

    def ping(self, data: bytes) -> None:
        """A PING with 8 bytes of opaque data; its ACK comes back as :class:`PingAcked`."""

    def push(self, stream_id: int, headers: Headers) -> int:
        """PUSH_PROMISE for a request on ``stream_id``; returns the promised stream's id. Raises StreamGone."""

    def write_raw(self, data: bytes) -> None:
        """Bytes queued as they are, after everything before (the frame API's raw frames)."""

    def encode_block(self, headers: Headers) -> bytes:
        """A header block encoded with this connection's HPACK encoder (the frame API)."""

    # -- flow control and state ---------------------------------------------------------------------

    def acknowledge(self, stream_id: int, size: int) -> None:
        """``size`` received bytes were consumed: credit them back (WINDOW_UPDATE as the codec sees fit)."""

    def set_receive_window(self, stream_id: int, size: int) -> None:
        """Make ``size`` the receive window of ``stream_id`` (0: the connection) that consumed bytes refill.

        Growing opens the difference at once (a WINDOW_UPDATE for bytes beyond
        what was consumed); shrinking withholds the credit of the next bytes
        acknowledged until the window is down to ``size`` (nothing granted is
        taken back). A stream the codec no longer has open is left alone.
        """

    def window(self, stream_id: int) -> int:
        """How many DATA bytes ``stream_id`` may send now (the smaller of its and the connection's window)."""

    @property
    def max_frame_size(self) -> int:
        """The largest DATA payload the peer accepts in one frame."""

    @property
    def inbound_window(self) -> int:
        """The connection's receive window: 0 means the client may send no DATA."""

    @property
    def peer_allows_push(self) -> bool:
        """The client's SETTINGS_ENABLE_PUSH."""

    def is_open(self, stream_id: int) -> bool:
        """Whether ``stream_id`` is open for sending (not closed or reset)."""

    def release(self) -> None:
        """The connection is idle (no stream of ours open): drop what only finished streams still hold."""
