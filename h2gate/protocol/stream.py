"""One request/response exchange on one HTTP/2 stream: the only API adapters use.

Theory of operation. The core (:mod:`h2gate.protocol.core`) feeds the
client's side in as it decodes it (``_on_data``, ``_on_end``, ``_on_reset``,
``_on_window``: plain calls, no waiting); the stream's own task, running the
app through an adapter, pulls the body with :meth:`Stream.read` and sends the
response with :meth:`send_headers`, :meth:`send_data`, :meth:`send_trailers`.
Everything runs in the connection's trio thread. Whether a move is allowed is
the state table's call (:mod:`h2gate.protocol.stream_state`); resets and
pushes are the core's to decide and make (:meth:`reset` asks it).

Flow control is the backpressure: request bytes are acknowledged to the codec
(which opens the client's window again) only when :meth:`read` hands them to
the app, and :meth:`send_data` returns only once every byte fit in the
client's windows and the writer's queue is below its high-water mark.

A stream whose client reset it, or whose connection is gone, fails the app's
next read or send with :class:`~h2gate.errors.ClientDisconnected`, never with
an error that blames the app.

What cancels the app (:attr:`Stream.scope`, an
:class:`~h2gate.protocol.stream_offtask.AppScope`) and the sends that never
wait, for an app served without a trio task (``respond_nowait``,
``send_data_nowait``), are the base class in :mod:`h2gate.protocol.stream_offtask`.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from typing import TYPE_CHECKING

import trio

from h2gate.compiled import caused
from h2gate.errors import ClientDisconnected, ErrorCode
from h2gate.http.head import Headers, RequestHead, split_head
from h2gate.observe import metrics
from h2gate.protocol.codec import StreamGone
from h2gate.protocol.limits import HIGH_WATER
from h2gate.protocol.priority import QUANTUM, Priority, priority_of_headers
from h2gate.protocol.signal import Signal
from h2gate.protocol.stream_offtask import OffTaskSends
from h2gate.protocol.stream_state import Move, State, StreamState

if TYPE_CHECKING:
    from h2gate.protocol.core import ConnectionCore

log = logging.getLogger("h2gate.error")


async def _wait_flushable(core: ConnectionCore) -> None:
    """Backpressure for senders: wait while the writer holds more than HIGH_WATER bytes."""
    while core.queued > HIGH_WATER and not core.closed:
        await core.drained.wait()


class Stream(OffTaskSends):
    """One exchange (see the module docstring). Fields other than the documented ones are the stream's own."""

    # With OffTaskSends' five (h2gate.protocol.stream_offtask).
    __slots__ = (
        "_chunks", "_core", "_done", "_head", "_readable", "_writable", "buffered", "cut", "headers",
        "last_activity", "reset_code", "state", "stream_id", "too_large", "trailers",
    )  # fmt: skip

    def __init__(
        self,
        core: ConnectionCore,
        stream_id: int,
        headers: Headers,
        *,
        request_ended: bool,
        head: RequestHead | None = None,
    ) -> None:
        self._core = core
        self.stream_id = stream_id
        self.headers = headers
        self.state = StreamState(request_ended=request_ended)
        self._chunks: deque[tuple[bytes, int]] | None = None  # made by the first DATA: most requests have none
        self.buffered = 0  # request body bytes received and not yet read by the app
        #: The client's trailer section (RFC 9110 §6.5), filled in place before the body's end is seen.
        self.trailers: Headers = []
        self.reset_code: int | None = None  # why the stream was cut off, once it was
        self.cut = False  # the server's shutdown cut the response at --graceful-timeout
        self.too_large = False  # its declared content-length is over --max-body-size: answered 413
        self.status = 0
        self.response_headers: Headers = []  # the final HEADERS block, for the access log
        self.bytes_sent = 0
        # Made by the first waiter: firing a signal nobody waits on does nothing, and most never get one.
        self._readable: Signal | None = None
        self._writable: Signal | None = None
        self._room_unserved = False  # waited for the writer (send_data_nowait) and got no chunk in since
        self._done: trio.Event | None = None  # made when someone waits (see done)
        self._head = head  # the core's parse_request made it; else split on first use
        #: What cancels the app (cancel_app_soon): set by whoever runs it, else a trio scope made on first use.
        self.scope = None
        #: Last DATA received or taken by the app (the body timeout: only read while the body is open).
        self.last_activity = 0.0 if request_ended else core.clock()

    # -- what adapters read ----------------------------------------------------------------------

    @property
    def head(self) -> RequestHead:
        """The request's pseudo-headers and regular fields, split once and shared by the adapters."""
        if self._head is None:
            self._head = split_head(self.headers)
        return self._head

    @property
    def done(self) -> trio.Event:
        """Set once both sides are over (or the stream was reset): what an app waiting for a disconnect awaits.

        Made on first use: most exchanges end without anyone waiting for it.
        """
        done = self._done
        if done is None:
            done = self._done = trio.Event()
            if self.state.done:
                done.set()
        return done

    @property
    def request_ended(self) -> bool:
        """The client's END_STREAM arrived: the whole body is here (or already read)."""
        return self.state.request is State.ENDED

    @property
    def headers_sent(self) -> bool:
        return self.state.response is not State.IDLE

    @property
    def response_ended(self) -> bool:
        return self.state.response is State.ENDED

    @property
    def disconnected(self) -> bool:
        """The stream was reset or its connection is gone: nothing more reaches the client."""
        return self.reset_code is not None

    @property
    def push_allowed(self) -> bool:
        """The client accepts server pushes (SETTINGS_ENABLE_PUSH) and the connection is open."""
        return self.reset_code is None and self._core.push_allowed

    @property
    def default_scheme(self) -> str:
        """The connection's scheme, for a request that gave no :scheme."""
        return self._core.scheme

    # -- the client's side, fed by the core (no waiting) ---------------------------------------------

    def _on_data(self, data: bytes, flow_length: int) -> None:
        if data:  # empty DATA frames do not keep an idle body alive
            self.last_activity = self._core.clock()
        chunks = self._chunks
        if chunks is None:
            chunks = self._chunks = deque()
        chunks.append((data, flow_length))
        self.buffered += len(data)
        if self._readable is not None:
            self._readable.fire()

    def _on_trailers(self, headers: Headers) -> None:
        """A validated trailer section; it always arrives before :meth:`_on_end`."""
        self.trailers.extend(headers)

    def _on_end(self) -> None:
        self.state.apply(Move.RECV_END)
        if self._readable is not None:
            self._readable.fire()
        self._check_done()

    def _on_reset(self, code: int, move: Move = Move.RESET) -> None:
        """Reset by either side, or the connection is gone: wake everyone, give back the window held."""
        if self.reset_code is None:
            self.reset_code = code
        self.state.apply(move)
        self._release_buffered()
        if self._readable is not None:
            self._readable.fire()
        if self._writable is not None:
            self._writable.fire()
        if self._done is not None:
            self._done.set()

    def _on_lost(self) -> None:
        """The connection is gone: to the app, as if the client had reset the stream."""
        self._on_reset(ErrorCode.CANCEL, Move.LOST)

    def _on_window(self) -> None:
        if self._writable is not None:
            self._writable.fire()

    def _cut(self) -> None:
        """Shutdown's grace period ran out: end the exchange now, as its protocol expects.

        A gRPC call gets the status gRPC has for this, UNAVAILABLE (retry elsewhere), in
        trailers or a trailers-only response; anything else gets RST_STREAM CANCEL. The
        app's next read or send sees a disconnect either way.
        """
        self.cut = True
        core, sid = self._core, self.stream_id
        content_type = next((v for n, v in self.head.fields if n == b"content-type"), b"")
        if content_type == b"application/grpc" or content_type.startswith(b"application/grpc+"):
            status = [(b"grpc-status", b"14"), (b"grpc-message", b"server shutting down")]
            try:
                if self.state.response is State.IDLE:
                    head = [(b":status", b"200"), (b"content-type", b"application/grpc"), *status]
                    core.codec.send_headers(sid, head, True)
                    self.state.apply(Move.SEND_HEADERS_END)
                    self.status = 200
                elif self.state.response is State.HEADERS:
                    core.codec.send_trailers(sid, status)
                    self.state.apply(Move.SEND_TRAILERS)
            except StreamGone:
                pass
            else:
                self._response_finished()  # stops the upload if the client is still sending
                if self.reset_code is None:
                    self._on_reset(ErrorCode.CANCEL)  # to the app: the client is gone
                core.wake()
                return
        core.reset_stream(sid, ErrorCode.CANCEL, None)

    def _readable_signal(self) -> Signal:
        signal = self._readable
        if signal is None:
            signal = self._readable = Signal()
        return signal

    def _writable_signal(self) -> Signal:
        signal = self._writable
        if signal is None:
            signal = self._writable = Signal()
        return signal

    # -- request body ----------------------------------------------------------------------------------

    async def wait_readable(self) -> None:
        """Until the next DATA, end of body or reset arrives (h2gate.asgi.frames waits on it)."""
        await self._readable_signal().wait()

    async def read(self) -> bytes:
        """Everything buffered so far (at least one byte), or b"" at the end of the body.

        Raises ClientDisconnected if the stream was reset before the body ended.
        """
        while not self._chunks:
            if self.reset_code is not None:
                raise ClientDisconnected(f"stream {self.stream_id} was reset (error code {self.reset_code})")
            if self.state.request is State.ENDED:
                return b""
            await self._readable_signal().wait()
        chunks = self._chunks
        if len(chunks) == 1:
            data, acked = chunks.popleft()
        else:
            parts = list(chunks)
            chunks.clear()
            data = b"".join(p[0] for p in parts)
            acked = sum(p[1] for p in parts)
        self.buffered -= len(data)
        if acked:
            self._core.acknowledge(self.stream_id, acked)
            self.last_activity = self._core.clock()  # the client has window again from now on
        return data

    def _release_buffered(self) -> None:
        """Give back the connection window held by bytes the app will never read."""
        chunks = self._chunks
        if not chunks:
            self.buffered = 0
            return
        size = sum(p[1] for p in chunks)
        chunks.clear()
        self.buffered = 0
        if size:
            self._core.acknowledge(self.stream_id, size)

    # -- response --------------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.reset_code is not None:
            raise ClientDisconnected(f"stream {self.stream_id} is closed (client reset or connection lost)")

    def _gone(self) -> ClientDisconnected:
        """The codec no longer has the stream open although we had not seen why: treat it as cut off."""
        self._core.reset_stream(self.stream_id, ErrorCode.CANCEL, None)
        return ClientDisconnected(f"stream {self.stream_id} is closed")

    async def send_headers(self, headers: Headers, *, end_stream: bool = False) -> None:
        """The final response HEADERS: a block from h2gate.http.fields.prepare_headers with ``:status`` set.

        Raises ClientDisconnected if the stream is gone, StreamStateError if the response already started.
        """
        self._check_open()
        move = Move.SEND_HEADERS_END if end_stream else Move.SEND_HEADERS
        self.state.check(move)
        try:
            self._core.codec.send_headers(self.stream_id, headers, end_stream)
        except StreamGone:
            raise caused(self._gone(), None)
        self.state.apply(move)
        self.status = int(headers[0][1])
        self.response_headers = headers
        if end_stream:
            self._response_finished()
        core = self._core
        core.wake()
        if core.queued > HIGH_WATER:
            await _wait_flushable(core)

    async def send_informational(self, headers: Headers) -> None:
        """A 1xx HEADERS block (e.g. 103 Early Hints); the final response may still follow."""
        self._check_open()
        self.state.check(Move.SEND_INFORMATIONAL)
        try:
            self._core.codec.send_informational(self.stream_id, headers)
        except StreamGone:
            raise caused(self._gone(), None)
        core = self._core
        core.wake()
        if core.queued > HIGH_WATER:
            await _wait_flushable(core)

    async def send_trailers(self, headers: Headers) -> None:
        """The response's trailer section (checked by h2gate.http.fields), ending the stream."""
        self._check_open()
        self.state.check(Move.SEND_TRAILERS)
        try:
            self._core.codec.send_trailers(self.stream_id, headers)
        except StreamGone:
            raise caused(self._gone(), None)
        self.state.apply(Move.SEND_TRAILERS)
        self._core.turns.scheduler.forget(self.stream_id)
        self._response_finished()
        core = self._core
        core.wake()
        if core.queued > HIGH_WATER:
            await _wait_flushable(core)

    async def send_data(self, data: bytes, *, end_stream: bool = False) -> None:
        """Queue ``data`` as DATA frames, waiting for window as needed.

        A stream that had to wait, or finds others waiting, sends in turns of
        one QUANTUM in the order h2gate.protocol.priority decides (RFC 9218).
        """
        core = self._core
        codec, turns = core.codec, core.turns
        view = memoryview(data)
        offset, total = 0, len(data)
        stalled_until: float | None = None  # while the window stays shut: when we give up
        contended = False
        header: Priority | None = None
        self._check_open()
        self.state.check(Move.SEND_DATA)
        try:
            while offset < total:
                self._check_open()
                if contended or turns.scheduler.busy:
                    if not contended:
                        contended, header = True, priority_of_headers(self.head.fields)
                    await turns.take(self.stream_id, turns.scheduler.priority(self.stream_id, header))
                    self._check_open()
                try:
                    window = codec.window(self.stream_id)
                except StreamGone:
                    raise caused(self._gone(), None)
                if window <= 0:
                    metrics.recorder.flow_control_stall()
                    turns.leave(self.stream_id)  # not contending while it cannot send
                    core.wake()
                    if stalled_until is None:
                        stalled_until = trio.current_time() + (core.send_timeout or math.inf)
                    await self._wait_window(stalled_until)
                    if not contended:
                        contended, header = True, priority_of_headers(self.head.fields)
                    continue
                stalled_until = None
                end = min(total, offset + window, offset + QUANTUM)
                last = end_stream and end == total
                try:
                    codec.send_data(self.stream_id, view[offset:end], last)
                except StreamGone:
                    raise caused(self._gone(), None)
                core.queued_data(end - offset)
                offset = end
                if last:
                    self._sent_end()
                if contended:
                    turns.passed(self.stream_id)
                elif core.queued > HIGH_WATER:  # the socket is the bottleneck: take turns from now on
                    contended, header = True, priority_of_headers(self.head.fields)
                core.wake()
                if core.queued > HIGH_WATER:
                    await _wait_flushable(core)
        finally:
            if contended:
                turns.leave(self.stream_id)
        self.bytes_sent = self.bytes_sent + total  # not +=: mypyc 2.4 fails on it here (bench/mypyc_tree.py)
        if end_stream and total == 0:
            self._check_open()
            try:
                codec.send_data(self.stream_id, b"", True)
            except StreamGone:
                raise caused(self._gone(), None)
            self._sent_end()
            core.wake()

    def _sent_end(self) -> None:
        """The response's END_STREAM is queued."""
        self.state.apply(Move.SEND_END)
        self._core.turns.scheduler.forget(self.stream_id)
        self._response_finished()

    async def _wait_window(self, deadline: float) -> None:
        """Wait for a window change; a stream whose window stays shut until ``deadline`` gets RST_STREAM CANCEL.

        The deadline runs from the moment the window closed, so WINDOW_UPDATEs
        that open nothing for this stream (or other streams' ones) do not extend it.
        """
        with trio.move_on_at(deadline) as stall:
            await self._writable_signal().wait()
        if stall.cancelled_caught:
            why = f"the client gave no flow-control window for {self._core.send_timeout:g}s"
            self._core.reset_stream(self.stream_id, ErrorCode.CANCEL, why)
            raise ClientDisconnected(f"stream {self.stream_id}: no flow-control window within the send timeout")

    async def end_response(self) -> None:
        """END_STREAM on our side only, the client's side staying open (a WebSocket's closing handshake)."""
        self._check_open()
        self.state.check(Move.SEND_END)
        try:
            self._core.codec.end_stream(self.stream_id)
        except StreamGone:
            raise caused(self._gone(), None)
        self.state.apply(Move.SEND_END)
        self._core.turns.scheduler.forget(self.stream_id)
        self._check_done()
        core = self._core
        core.wake()
        if core.queued > HIGH_WATER:
            await _wait_flushable(core)

    def _response_finished(self) -> None:
        if self.state.request is State.OPEN:
            # The app answered without reading the whole body: stop the upload
            # (RFC 9113 §8.1) and give back the window its buffered bytes held.
            self.reset(ErrorCode.NO_ERROR)
        self._check_done()

    def reset(self, code: int = ErrorCode.INTERNAL_ERROR) -> None:
        """Reset the stream from our side (app fault, early response). Never raises."""
        self._core.reset_stream(self.stream_id, code, None)

    def _check_done(self) -> None:
        if self._done is not None and self.state.done:
            self._done.set()

    # -- extensions ------------------------------------------------------------------------------------

    def push(self, headers: Headers) -> bool:
        """PUSH_PROMISE ``headers`` (a GET) and serve it as a request; False if the client cannot take it now."""
        if self.reset_code is not None:
            return False
        return self._core.push(self, headers)

    def drain_connection(self) -> None:
        """Close the connection gracefully once its streams are done (the frame API after raw writes)."""
        self._core.drain()

    def encode_block(self, headers: Headers) -> bytes:
        """``headers`` encoded with the connection's HPACK encoder (the frame API's raw HEADERS)."""
        return self._core.codec.encode_block(headers)

    async def write_raw(self, data: bytes, *, body_bytes: int, status: int, end_stream: bool) -> None:
        """Raw frames from the frame API, sent as they are; the connection closes once the app returns.

        ``body_bytes`` and ``status`` are what the frames carried on this
        stream (for the access log); ``end_stream``: one of them ended it.
        """
        core = self._core
        if core.closed:
            raise ClientDisconnected(f"stream {self.stream_id}: the connection is closed")
        core.write_raw(data)
        self.bytes_sent = self.bytes_sent + body_bytes  # not +=: see send_data
        if status and not self.status:
            self.status = status
        if self.state.response is State.IDLE:
            self.state.apply(Move.SEND_HEADERS)  # an app failure from now on resets the stream, no 500
        if end_stream and self.state.response is State.HEADERS:
            self.state.apply(Move.SEND_END)
            self._response_finished()
        await _wait_flushable(core)
