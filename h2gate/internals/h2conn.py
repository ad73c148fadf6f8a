"""h2 with its private methods overridden: the rules h2gate changes, and framing without h2's frame objects.

Only :class:`h2gate.protocol.h2codec.H2Codec` uses this. h2 is used as it
comes except where it turns a stream error into a connection error (too many
streams, content-length mismatch): the core answers those with RST_STREAM as
RFC 9113 asks. And one the other way round: DATA on a stream both sides ended
is a connection error, not h2's RST_STREAM. Every private name relied on here
has a probe in :mod:`h2gate.internals.probes`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import h2.config
import h2.connection
import h2.exceptions
import h2.settings
import h2.stream
from h2.connection import ConnectionInputs
from h2.stream import StreamInputs

from h2gate.internals.h2memory import SettingsBase, slim
from h2gate.internals.hpack_reuse import BlockDecoder, BlockEncoder
from h2gate.internals.probes import H2_INBOUND_WINDOWS, H2_LEAN, HPACK_TABLES, PROBES

PRIORITY_UPDATE = 0x10  # frame type (RFC 9218 §7.1)
SETTINGS_NO_RFC7540_PRIORITIES = 0x9  # RFC 9218 §2.1
#: A frame header: 24-bit length (as 16 + 8 bits), type, flags, stream id.
_FRAME_HEAD = struct.Struct(">HBBBL")
_DATA, _HEADERS, _CONTINUATION = 0x0, 0x1, 0x9  # frame types (RFC 9113 §6)
_END_STREAM, _END_HEADERS = 0x1, 0x4  # flags
_LEAN_DATA = PROBES[H2_LEAN]
_LEAN_HPACK = PROBES[HPACK_TABLES]
_INBOUND_WINDOWS = PROBES[H2_INBOUND_WINDOWS]
#: Windows still being shrunk that are remembered at most (those of streams closed meanwhile are dropped).
_MAX_SHRINKING = 64
#: Closed streams h2 may keep in ``streams`` before the next count forgets them (see open_inbound_streams).
_PRUNE_SLACK = 8


class LocalSettings(SettingsBase):  # type: ignore[misc,valid-type]
    """Our SETTINGS, as advertised; but h2 itself never refuses a stream for MAX_CONCURRENT_STREAMS.

    h2 raises TooManyStreamsError before it decodes the HEADERS, which leaves
    HPACK out of sync, so all that is left then is a connection error. RFC
    9113 §5.1.2 makes a stream over the limit a stream error: h2 decodes every
    request and the core refuses the excess with RST_STREAM REFUSED_STREAM,
    charged to the reset budget. The SETTINGS frame still carries the
    configured value: h2 serializes ``items()``, not this property.
    """

    @property
    def max_concurrent_streams(self) -> int:
        return 2**32

    @max_concurrent_streams.setter
    def max_concurrent_streams(self, value: int) -> None:
        self[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] = value


class ServerH2Connection(h2.connection.H2Connection):
    """h2, minus its content-length / DATA comparison, which the connection makes itself.

    h2 makes a mismatch a connection error from inside receive_data() and has
    no setting to turn that off; RFC 9113 §8.1.1 makes it a stream error (a
    malformed request). Its checks of the content-length *value* while
    decoding HEADERS (digits, agreement) raise a connection error as well; they
    are off too, :func:`h2gate.http.validate.request_problem` makes them a stream
    error. If a future h2 renames these private methods, the override is
    skipped and h2's own (connection error) checks stay in force.
    """

    upgraded = False  # set when stream 1 is the h2c upgrade request
    #: Told each well-formed PRIORITY_UPDATE (RFC 9218 §7.1): the prioritized stream id and the field value.
    on_priority_update: Callable[[int, bytes], None]
    #: Output not yet handed out, in order, ahead of h2's own buffer: lean DATA frames (header
    #: bytes, then the body slice itself, uncopied) and h2's bytes that came before them.
    #: data_to_send() joins it all with one exact-size copy; appending 16 KiB frames to h2's
    #: bytearray instead re-copied the growing buffer on every resize.
    _pieces: list[bytes | bytearray | memoryview]
    #: Encodes response blocks with h2's encoder, reusing unchanged fields (None: h2's encoder as is).
    _blocks: BlockEncoder | None
    #: Receive windows being shrunk: their target size by stream id (0: the connection); None while none is.
    _shrinking: dict[int, int] | None = None
    #: ``len(streams)`` at which the next new stream has h2 count (and forget) the closed ones.
    _prune_at = 0
    #: How each closed stream ended, kept to answer a late frame on it (RFC 9113 §5.1): h2 keeps
    #: 65,536, about 200 bytes each, so a long-lived connection with many requests held megabytes
    #: for as long as it lived, idle or not; the most recent 1,024 are plenty for frames in flight.
    MAX_CLOSED_STREAMS = 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._pieces = []
        super().__init__(*args, **kwargs)
        slim(self)  # the client's settings and the frame dispatch table, smaller (h2gate.internals.h2memory)
        self._blocks = None
        if _LEAN_HPACK:
            self._blocks = BlockEncoder(self.encoder)
            decoder = BlockDecoder()
            decoder.max_header_list_size = self.decoder.max_header_list_size
            self.decoder = decoder

    @property
    def open_inbound_streams(self) -> int:
        """h2's count of the client's open streams, taken only once a few closed ones have piled up.

        h2 counts before every new stream to compare with our
        SETTINGS_MAX_CONCURRENT_STREAMS, which :class:`LocalSettings` makes
        unlimited (the core refuses the excess), so the figure itself is never
        used; the count's side effect is: it moves closed streams out of
        ``streams``. Counting every time walked the whole table per request;
        now it happens when ``_PRUNE_SLACK`` more streams than after the last
        count are in the table, so at most that many closed ones wait there
        (h2 itself keeps them until the next new stream). Returns 0 in between.
        """
        if len(self.streams) < self._prune_at:
            return 0
        count = int(h2.connection.H2Connection.open_inbound_streams.fget(self))  # type: ignore[attr-defined]
        self._prune_at = len(self.streams) + _PRUNE_SLACK
        return count

    def forget_closed_streams(self) -> None:
        """The connection is idle: have h2 move its closed streams out now, and start ``streams`` afresh if empty.

        Otherwise the last request's stream object (state machine, windows)
        stays until the next new stream, and the emptied dict keeps its table.
        """
        h2.connection.H2Connection.open_inbound_streams.fget(self)  # type: ignore[attr-defined]
        self._prune_at = len(self.streams) + _PRUNE_SLACK
        if not self.streams:
            self.streams = {}

    def data_to_send(self, amount: int | None = None) -> bytes:
        pieces = self._pieces
        if not pieces:
            return super().data_to_send(amount)
        if self._data_to_send:
            pieces.append(self._data_to_send)
        self._pieces, self._data_to_send = [], bytearray()
        if amount is None:
            return b"".join(pieces)
        self._data_to_send = bytearray(b"".join(pieces))
        return super().data_to_send(amount)

    def clear_outbound_data_buffer(self) -> None:
        self._pieces = []
        super().clear_outbound_data_buffer()

    def send_data(self, stream_id: int, data: Any, end_stream: bool = False, pad_length: Any = None) -> None:
        """h2's ``send_data``, through :meth:`queue_data` when the frame is not padded."""
        if (
            pad_length is not None
            or len(data) > self.max_outbound_frame_size
            or not self.queue_data(stream_id, data, end_stream=end_stream)
        ):
            super().send_data(stream_id, data, end_stream=end_stream, pad_length=pad_length)

    def queue_data(self, stream_id: int, data: Any, *, end_stream: bool = False) -> bool:
        """Queue ``data`` as DATA frames of at most the peer's frame size, in one step; the last may end the stream.

        The bulk path of downloads, and the one frame of a small body: after the
        same checks and state transitions h2's ``send_data`` makes (connection
        and stream state, both windows, END_STREAM), frame headers and slices of
        ``data`` go to :attr:`_pieces`, with no frame object per 16 KiB and one
        state transition per call rather than per frame (bench/README.md has the
        figures). Empty ``data`` is taken only with ``end_stream`` (an empty
        DATA frame ending the stream). Returns False, having done nothing, when
        h2 itself must take the data: unknown stream, empty data that ends
        nothing, not enough window, or an h2 without the internals this relies on.
        """
        stream = self.streams.get(stream_id)
        size = len(data)
        if (
            stream is None
            or not (size or end_stream)
            or not _LEAN_DATA
            or size > min(self.outbound_flow_control_window, stream.outbound_flow_control_window)
        ):
            return False
        self.state_machine.process_input(ConnectionInputs.SEND_DATA)
        stream.state_machine.process_input(StreamInputs.SEND_DATA)
        if end_stream:
            stream.state_machine.process_input(StreamInputs.SEND_END_STREAM)
        pieces = self._head_of_pieces()
        view = data if isinstance(data, memoryview) else memoryview(data)
        if not isinstance(view.obj, bytes):
            view = memoryview(bytes(view))  # kept until the writer runs: a mutable buffer must not change meanwhile
        step = self.max_outbound_frame_size
        head = _FRAME_HEAD.pack
        last = max(size - 1, 0) // step * step  # where the frame that may carry END_STREAM starts
        for start in range(0, last + 1, step):
            n = min(step, size - start)
            flags = _END_STREAM if end_stream and start == last else 0x0
            pieces.append(head(n >> 8, n & 0xFF, _DATA, flags, stream_id))
            if n:
                pieces.append(view[start : start + n])
        stream.outbound_flow_control_window -= size
        self.outbound_flow_control_window -= size
        return True

    def send_checked_headers(self, stream_id: int, headers: list[tuple[bytes, bytes]], end_stream: bool) -> None:
        """A response's final HEADERS block that :func:`h2gate.protocol.replies.prepare_headers` already checked.

        h2's ``send_headers`` would normalise and validate the block again and
        build a frame object per HEADERS/CONTINUATION, a seventh of the CPU of a
        small request. Here the same state transitions are made (connection,
        then stream, then END_STREAM), the block is HPACK-encoded with h2's own
        encoder (through :class:`h2gate.internals.hpack_reuse.BlockEncoder`) and framed
        directly. Informational (1xx) blocks, trailers and an h2 without the
        internals this relies on go through h2 with its outbound checks off, as
        before; h2 raises its errors for closed streams either way.
        """
        stream = self.streams.get(stream_id)
        if (
            stream is None
            or not _LEAN_DATA
            or stream.state_machine.headers_sent
            or not headers
            or headers[0][0] != b":status"
            or headers[0][1][:1] == b"1"
        ):
            config = self.config
            config.normalize_outbound_headers = config.validate_outbound_headers = False
            try:
                self.send_headers(stream_id, headers, end_stream=end_stream)
            finally:
                config.normalize_outbound_headers = config.validate_outbound_headers = True
            return
        self.state_machine.process_input(ConnectionInputs.SEND_HEADERS)
        stream.state_machine.process_input(StreamInputs.SEND_HEADERS)
        # HPACK state changes only after the transitions succeeded.
        block = self._blocks.encode(headers) if self._blocks is not None else self.encoder.encode(headers)
        if end_stream:
            stream.state_machine.process_input(StreamInputs.SEND_END_STREAM)
        pieces = self._head_of_pieces()
        head = _FRAME_HEAD.pack
        step = self.max_outbound_frame_size
        size = len(block)
        kind, flags = _HEADERS, _END_STREAM if end_stream else 0x0
        for start in range(0, size, step):
            n = min(step, size - start)
            if start + n == size:
                flags |= _END_HEADERS
            pieces.append(head(n >> 8, n & 0xFF, kind, flags, stream_id))
            pieces.append(block if n == size else block[start : start + n])
            kind, flags = _CONTINUATION, 0x0

    def _head_of_pieces(self) -> list[bytes | bytearray | memoryview]:
        """:attr:`_pieces`, with whatever h2 queued so far moved in first, so that order is kept."""
        pieces = self._pieces
        if self._data_to_send:
            pieces.append(self._data_to_send)
            self._data_to_send = bytearray()
        return pieces

    def set_inbound_window(self, stream_id: int, size: int) -> None:
        """Make ``size`` the receive window of ``stream_id`` (0: the connection) that acknowledged bytes refill.

        h2's window managers refill a window up to their ``max_window_size``
        and send credit once half of it was consumed. Growing: a WINDOW_UPDATE
        for the difference now, and the new size as that maximum (h2's own
        ``increment_flow_control_window`` raises it only as far as the window
        now open reaches). Shrinking: the maximum comes down as far as the
        window the client still holds allows, then further at each
        acknowledgement (:meth:`acknowledge_received_data`), so the credit of
        consumed bytes is withheld until the window is ``size``; the maximum
        never drops below the open window, so h2 never computes a negative
        increment. Without these internals only growing works (h2's public API).
        A stream h2 no longer has open is left alone.
        """
        if stream_id:
            stream = self.streams.get(stream_id)
            if stream is None or stream.closed:
                return
        manager = self._inbound_manager(stream_id)
        if manager is None:  # no internals: h2's public API can only open more
            grow = size - self._inbound_window(stream_id)
            if grow > 0:
                self._open_inbound(stream_id, grow)
            return
        shrinking = self._shrinking
        grow = size - manager.max_window_size
        if grow > 0:
            if shrinking is not None:
                shrinking.pop(stream_id, None)
            if self._open_inbound(stream_id, grow):
                manager.max_window_size = size
        elif grow < 0:
            if shrinking is None:
                shrinking = self._shrinking = {}
            elif len(shrinking) >= _MAX_SHRINKING:
                for sid in [sid for sid in shrinking if sid and sid not in self.streams]:
                    del shrinking[sid]
            shrinking[stream_id] = size
            self._lower(stream_id, manager, size)

    def _inbound_manager(self, stream_id: int) -> Any:
        """h2's window manager of ``stream_id``'s receive window (0: the connection's); None if closed or unprobed."""
        if not _INBOUND_WINDOWS:
            return None
        if not stream_id:
            return self._inbound_flow_control_window_manager
        stream = self.streams.get(stream_id)
        if stream is None or stream.closed:
            return None
        return stream._inbound_window_manager

    def _inbound_window(self, stream_id: int) -> int:
        if not stream_id:
            return int(self.inbound_flow_control_window)
        return int(self.streams[stream_id].inbound_flow_control_window)

    def _open_inbound(self, stream_id: int, grow: int) -> bool:
        try:
            self.increment_flow_control_window(min(grow, self.MAX_WINDOW_INCREMENT), stream_id or None)
        except (h2.exceptions.ProtocolError, KeyError):  # the stream closed meanwhile
            return False
        return True

    def _lower(self, stream_id: int, manager: Any, size: int) -> None:
        """Bring ``manager``'s maximum towards ``size``, never below the window the client still holds."""
        manager.max_window_size = max(size, manager.current_window_size)
        if manager.max_window_size == size and self._shrinking is not None:
            self._shrinking.pop(stream_id, None)
            if not self._shrinking:
                self._shrinking = None

    def acknowledge_received_data(self, acknowledged_size: int, stream_id: int) -> None:
        """h2's, after bringing windows being shrunk closer to their size (see :meth:`set_inbound_window`)."""
        shrinking = self._shrinking
        if shrinking is not None:
            for sid in (0, stream_id):
                size = shrinking.get(sid)
                if size is not None:
                    manager = self._inbound_manager(sid)
                    if manager is None:
                        shrinking.pop(sid, None)
                    else:
                        self._lower(sid, manager, size)
            if not shrinking:
                self._shrinking = None
        super().acknowledge_received_data(acknowledged_size, stream_id)

    def _receive_unknown_frame(self, frame: Any) -> Any:
        """PRIORITY_UPDATE (RFC 9218 §7.1) goes to :attr:`on_priority_update`; h2 ignores every other unknown type."""
        if frame.type == PRIORITY_UPDATE:
            if frame.stream_id:
                raise h2.exceptions.ProtocolError(f"PRIORITY_UPDATE on stream {frame.stream_id}")
            body = frame.body
            if len(body) < 4:
                raise h2.exceptions.FrameTooLargeError(f"PRIORITY_UPDATE of length {len(body)}")
            prioritized = int.from_bytes(body[:4], "big") & 0x7FFFFFFF
            if not prioritized:
                raise h2.exceptions.ProtocolError("PRIORITY_UPDATE for stream 0")
            self.on_priority_update(prioritized, bytes(body[4:]))
        return super()._receive_unknown_frame(frame)

    def _handle_data_on_closed_stream(self, events: Any, exc: Any, frame: Any) -> Any:
        """DATA on a stream closed by END_STREAM both ways is a connection error STREAM_CLOSED (RFC 9113 §5.1).

        h2 answers every DATA on a closed stream with RST_STREAM; that stays for
        streams closed by a reset, where the client may not have seen it yet, and
        for the h2c upgrade's stream 1, whose request ended in HTTP/1.1, not with
        an END_STREAM frame (so only §5.1's "MAY" applies).
        """
        if self._stream_is_closed_by_end(exc.stream_id) and not (exc.stream_id == 1 and self.upgraded):
            raise exc
        return super()._handle_data_on_closed_stream(events, exc, frame)

    def _begin_new_stream(self, stream_id: int, allowed_ids: Any) -> Any:
        stream = super()._begin_new_stream(stream_id, allowed_ids)
        if hasattr(stream, "_track_content_length") and hasattr(stream, "_initialize_content_length"):
            stream._initialize_content_length = _not_tracked  # type: ignore[method-assign,assignment]
            stream._track_content_length = _not_tracked  # type: ignore[method-assign,assignment]
        return stream

    def _receive_goaway_frame(self, frame: Any) -> Any:
        """A client's GOAWAY NO_ERROR leaves its open streams to be answered (RFC 9113 §6.8).

        h2 closes its whole state machine on any GOAWAY and drops the bytes it
        had not handed out yet, so responses in flight would fail. A graceful
        GOAWAY only means the client opens no more streams: keep the state and
        the pending bytes, and let the connection end once the streams are done.
        """
        if frame.error_code:
            return super()._receive_goaway_frame(frame)
        state, pending, pieces = self.state_machine.state, self._data_to_send, self._pieces
        frames, events = super()._receive_goaway_frame(frame)
        self.state_machine.state, self._data_to_send, self._pieces = state, pending, pieces
        return frames, events


def _not_tracked(*args: Any) -> None:
    """Stands in for h2's H2Stream content-length checks: see Connection._on_data and h2gate.http.validate."""
