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
* **Reading** (:mod:`h2gate.protocol.ngh2receive`): streams libnghttp2
  resets itself, DATA after a close and connection errors libnghttp2 ends
  on its own are told as the h2 codec tells them; the theory is there.
* **Winding down.** Once our final GOAWAY is out and no stream is left,
  libnghttp2 refuses every call ("terminating"). Resets, PINGs and GOAWAYs
  then go out raw, acknowledgements and further reads are dropped, and send
  commands and :meth:`Ngh2Codec.window` say :class:`~h2gate.protocol.codec.StreamGone`.
* **Our limits stay in front.** The core sees every frame first
  (:mod:`h2gate.protocol.framecheck`) and keeps every budget, so libnghttp2's
  own limits are set above ours and its codes and reasons never replace ours
  (:mod:`h2gate.protocol.ngh2setup`). And libnghttp2 is never told our
  SETTINGS_MAX_CONCURRENT_STREAMS: past it, it ends the connection (PROTOCOL_ERROR) where RFC 9113 §5.1.2 asks
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

from h2gate.compiled import caused
from h2gate.errors import ErrorCode
from h2gate.http.head import Headers
from h2gate.protocol import codec as seam
from h2gate.protocol.ngh2receive import ENDED, OUR_RESET, RST_STREAM_TYPE, Ngh2Receiver
from h2gate.protocol.ngh2setup import (
    ENABLE_CONNECT_PROTOCOL,
    ENABLE_PUSH,
    INITIAL_WINDOW,
    MAX_CONCURRENT_STREAMS,
    MAX_FRAME,
    MAX_HEADER_LIST,
    NO_RFC7540_PRIORITIES,
    SEND_ERRORS,
    STATE_ERRORS,
    configuration,
)
from h2gate.protocol.rawframes import (
    end_stream_frame,
    goaway_frame,
    ping_frame,
    rst_stream_frame,
    set_setting,
    without_frame,
)

_MAX_STREAM_ID = 2**31 - 1


class Ngh2Codec(Ngh2Receiver):
    """One connection's HTTP/2 state, kept by libnghttp2 (see the module docstring)."""

    __slots__ = ()

    def initiate(self, settings: seam.LocalSettings, upgrade_settings: bytes | None = None) -> None:
        ours = {
            MAX_CONCURRENT_STREAMS: 0xFFFFFFFF,  # libnghttp2 is told "unlimited" (module docstring)
            INITIAL_WINDOW: settings.initial_window_size,
            MAX_HEADER_LIST: settings.max_header_list_size,
            MAX_FRAME: settings.max_frame_size,
            ENABLE_PUSH: 0,
            ENABLE_CONNECT_PROTOCOL: int(settings.enable_connect_protocol),
            NO_RFC7540_PRIORITIES: 1,  # RFC 9218 §2.1: we schedule by h2gate.protocol.priority
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
        preface = set_setting(conn.data_to_send(), MAX_CONCURRENT_STREAMS, settings.max_concurrent_streams)
        self._out.append(preface)
        if settings.connection_window_size > 65_535:
            conn.set_local_window_size(settings.connection_window_size)
            self._drain()

    # -- output ------------------------------------------------------------------------------------

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
        except SEND_ERRORS:
            self._gone(stream_id)
        self._dirty = True

    def send_informational(self, stream_id: int, headers: Headers) -> None:
        if self._dead:
            self._gone(stream_id)
        try:
            self._conn.send_informational_response(stream_id, headers)
        except SEND_ERRORS:
            self._gone(stream_id)
        self._dirty = True

    def send_trailers(self, stream_id: int, headers: Headers) -> None:
        if self._dead:
            self._gone(stream_id)
        try:
            self._conn.send_trailers(stream_id, headers)
        except SEND_ERRORS:
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
        except SEND_ERRORS:
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
        taken = without_frame(conn.data_to_send(), RST_STREAM_TYPE, stream_id)
        if taken:
            self._out.append(taken)
        conn.events()  # the close of the reset
        self._closed_now(stream_id, ENDED)
        self._ended.discard(stream_id)
        self._out.append(end_stream_frame(stream_id))

    def reset(self, stream_id: int, code: int) -> None:
        if not self._dead and self.is_open(stream_id):
            self._closed_now(stream_id, OUR_RESET)  # even with NO_ERROR: the client's DATA may be in flight
            try:
                self._conn.reset_stream(stream_id, code)
            except STATE_ERRORS:
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
        except STATE_ERRORS:
            self._raw(goaway_frame(last_stream_id, code, debug))
            return
        self._dirty = True

    def ping(self, data: bytes) -> None:
        try:
            if self._dead:
                raise ngh2.ConnectionStateError("the session is over")
            self._conn.ping(data)
        except STATE_ERRORS:
            self._raw(ping_frame(data))
            return
        self._dirty = True

    def push(self, stream_id: int, headers: Headers) -> int:
        if self._dead:
            self._gone(stream_id)
        try:
            promised = self._conn.send_push_promise(stream_id, headers)
        except (*SEND_ERRORS, ngh2.NoAvailableStreamIDError) as exc:
            raise caused(seam.StreamGone(stream_id), exc)
        self._dirty = True
        return promised

    # -- flow control and state ----------------------------------------------------------------------

    def acknowledge(self, stream_id: int, size: int) -> None:
        if size and not self._dead:
            try:
                self._conn.acknowledge_received_data(size, stream_id)
            except STATE_ERRORS:
                return  # the stream or the session is gone: no window to give back
            self._dirty = True

    def set_receive_window(self, stream_id: int, size: int) -> None:
        # libnghttp2 opens a larger window at once and withholds credit down to a smaller one.
        if self._dead:
            return
        try:
            self._conn.set_local_window_size(size, stream_id=stream_id)
        except STATE_ERRORS:
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
        except STATE_ERRORS:
            self._gone(stream_id)

    @property
    def max_frame_size(self) -> int:
        try:
            return 16_384 if self._dead else self._conn.remote_settings.get(MAX_FRAME, 16_384)
        except STATE_ERRORS:
            return 16_384

    @property
    def inbound_window(self) -> int:
        if self._dirty:
            self._drain()
        try:
            return 0 if self._dead else self._conn.local_window_size
        except STATE_ERRORS:
            return 0

    @property
    def peer_allows_push(self) -> bool:
        return self._push and not self._dead

    def release(self) -> None:
        """Nothing to drop: libnghttp2 frees a closed stream itself."""
