"""One request/response exchange on one HTTP/2 stream, as adapters see it.

Theory of operation: the connection's reader task feeds inbound events in
(``on_data``, ``on_end``, ``on_reset``, ``on_window``); the stream's own task
(running the app) pulls the body with :meth:`read` and pushes the response
with :meth:`send_headers` / :meth:`send_data`. Both sides run in the
connection's trio thread, so touching the ``H2Connection`` here is safe; the
bytes h2 produces go to the socket only through the connection's writer.

Flow control is the backpressure: request bytes are acknowledged to h2 (which
sends WINDOW_UPDATE) only when :meth:`read` hands them to the app, and
:meth:`send_data` returns only once every byte fit in the peer's windows and
the writer's queue is below its high-water mark.
"""

from __future__ import annotations

import functools
import logging
import math
from collections import deque
from typing import TYPE_CHECKING

import trio
from h2.errors import ErrorCodes
from h2.exceptions import FlowControlError, ProtocolError, StreamClosedError

from h2gate.errors import ClientDisconnected
from h2gate.http.head import Headers, RequestHead, split_head
from h2gate.observe import metrics
from h2gate.protocol.limits import HIGH_WATER
from h2gate.protocol.priority import QUANTUM, UNSIGNALLED, Priority, priority_of_headers
from h2gate.protocol.signal import Signal

if TYPE_CHECKING:
    import asyncio

    from h2gate.protocol.connection import Connection

log = logging.getLogger("h2gate.error")
#: Seconds an app keeps running after its stream was reset before the response completed
#: (it sees http.disconnect at once): reset streams must not leave work behind (Rapid Reset).
RESET_GRACE = 1.0


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():  # the app's task may have been cancelled meanwhile
        future.set_result(None)


class Exchange:
    def __init__(self, conn: Connection, stream_id: int, headers: Headers) -> None:
        self.conn = conn
        self.stream_id = stream_id
        self.headers = headers
        self._chunks: deque[tuple[bytes, int]] = deque()
        self.buffered = 0
        self.request_ended = False
        #: The client's trailer section (RFC 9110 §6.5), filled in place before the body's end is seen.
        self.trailers: Headers = []
        self.reset_code: int | None = None
        self.headers_sent = False
        self.response_ended = False
        self.status = 0
        self.response_headers: Headers = []  # the final HEADERS block, for the access log
        self.bytes_sent = 0
        self._readable = Signal()
        self._room_unserved = False  # waited for the writer (send_data_nowait) and got no chunk in since
        self._writable = Signal()
        self.done = trio.Event()
        self._head: RequestHead | None = None
        self.scope = trio.CancelScope()  # around the app's task; see cancel_app_soon
        self.last_activity = trio.current_time()  # last DATA received or taken by the app (body timeout)

    @property
    def head(self) -> RequestHead:
        """The request's pseudo-headers and regular fields, split once and shared by the adapters."""
        if self._head is None:
            self._head = split_head(self.headers)
        return self._head

    # -- inbound, called by the connection's reader ---------------------------------

    def on_data(self, data: bytes, flow_controlled_length: int) -> None:
        if data:  # empty DATA frames do not keep an idle body alive
            self.last_activity = trio.current_time()
        self._chunks.append((data, flow_controlled_length))
        self.buffered += len(data)
        self._readable.fire()

    def on_trailers(self, headers: Headers) -> None:
        """A validated trailer section; it always arrives before :meth:`on_end`."""
        self.trailers.extend(headers)

    def on_end(self) -> None:
        self.request_ended = True
        self._readable.fire()
        self._check_done()

    def on_reset(self, code: int) -> None:
        """The client reset the stream or the connection is gone: wake everyone."""
        if self.reset_code is None:
            self.reset_code = code
        self._release_buffered()
        self._readable.fire()
        self._writable.fire()
        self.done.set()

    def on_window(self) -> None:
        self._writable.fire()

    def cancel_app_soon(self) -> None:
        """The stream was reset before the response completed: cancel the app after RESET_GRACE."""
        if not self.response_ended:
            self.scope.deadline = min(self.scope.deadline, trio.current_time() + RESET_GRACE)

    # -- request body ------------------------------------------------------------------

    async def wait_readable(self) -> None:
        """Until the next DATA, end of body or reset arrives (h2gate.asgi.frames waits on it)."""
        await self._readable.wait()

    @property
    def disconnected(self) -> bool:
        """The stream was reset or its connection is gone: nothing more reaches the client."""
        return self.reset_code is not None or self.conn.closed

    async def read(self) -> bytes:
        """Everything buffered so far (at least one byte), or b"" at the end of the body.

        Raises ClientDisconnected if the stream was reset before the body ended.
        """
        while not self._chunks:
            if self.reset_code is not None:
                raise ClientDisconnected(f"stream {self.stream_id} was reset (error code {self.reset_code})")
            if self.request_ended:
                return b""
            await self._readable.wait()
        if len(self._chunks) == 1:
            data, acked = self._chunks.popleft()
        else:
            parts = list(self._chunks)
            self._chunks.clear()
            data = b"".join(p[0] for p in parts)
            acked = sum(p[1] for p in parts)
        self.buffered -= len(data)
        self._acknowledge(acked)
        if acked:
            self.last_activity = trio.current_time()  # the client has window again from now on
        return data

    def _acknowledge(self, size: int) -> None:
        if size and not self.conn.closed:
            self.conn.h2.acknowledge_received_data(size, self.stream_id)
            self.conn.wake_writer()

    def _release_buffered(self) -> None:
        """Return the connection window held by bytes the app will never read."""
        size = sum(p[1] for p in self._chunks)
        self._chunks.clear()
        self.buffered = 0
        self._acknowledge(size)

    # -- response ----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.reset_code is not None or self.conn.closed:
            raise ClientDisconnected(f"stream {self.stream_id} is closed (client reset or connection lost)")

    async def send_headers(self, headers: Headers, *, end_stream: bool = False, checked: bool = False) -> None:
        """HEADERS for the response; ``checked``: the block came from :func:`h2gate.protocol.replies.prepare_headers`.

        A checked block is already lowercase, stripped and free of bad bytes and
        connection-specific fields, so h2's own outbound pass is skipped for it
        and it is framed without h2's frame objects (ServerH2Connection.send_checked_headers).
        """
        self._check_open()
        h2 = self.conn.h2
        try:
            if checked:
                h2.send_checked_headers(self.stream_id, headers, end_stream)
            else:
                h2.send_headers(self.stream_id, headers, end_stream=end_stream)
        except StreamClosedError:
            raise ClientDisconnected(f"stream {self.stream_id} is closed") from None
        self.response_headers = self.response_headers or headers
        self.headers_sent = True
        if end_stream:
            self._response_finished()
        self.conn.wake_writer()
        await self.conn.wait_flushable()

    async def send_informational(self, headers: Headers) -> None:
        """A 1xx HEADERS block (e.g. 103 Early Hints); the final response may still follow."""
        self._check_open()
        try:
            self.conn.h2.send_headers(self.stream_id, headers)
        except StreamClosedError:
            raise ClientDisconnected(f"stream {self.stream_id} is closed") from None
        self.conn.wake_writer()
        await self.conn.wait_flushable()

    async def send_data(self, data: bytes, *, end_stream: bool = False) -> None:
        """Queue ``data`` as DATA frames, waiting for window as needed.

        A stream that had to wait, or finds others waiting, sends in turns of
        one QUANTUM in the order h2gate.protocol.priority decides (RFC 9218).
        """
        h2 = self.conn.h2
        turns = self.conn.turns
        view = memoryview(data)
        offset, total = 0, len(data)
        stalled_until: float | None = None  # while the window stays shut: when we give up
        contended = False
        header: Priority | None = None
        try:
            while offset < total:
                self._check_open()
                if contended or turns.scheduler.busy:
                    if not contended:
                        contended, header = True, priority_of_headers(self.head.fields)
                    await turns.take(self.stream_id, turns.scheduler.priority(self.stream_id, header))
                    self._check_open()
                try:
                    window = h2.local_flow_control_window(self.stream_id)
                except StreamClosedError:
                    raise ClientDisconnected(f"stream {self.stream_id} is closed") from None
                if window <= 0:
                    metrics.recorder.flow_control_stall()
                    turns.leave(self.stream_id)  # not contending while it cannot send
                    self.conn.wake_writer()
                    if stalled_until is None:
                        stalled_until = trio.current_time() + (self.conn.config.send_timeout or math.inf)
                    await self._wait_window(stalled_until)
                    if not contended:
                        contended, header = True, priority_of_headers(self.head.fields)
                    continue
                stalled_until = None
                max_frame = h2.max_outbound_frame_size
                end = min(total, offset + window, offset + QUANTUM)
                # h2gate's bulk path frames the whole span in one call (h2state.ServerH2Connection.queue_data).
                if h2.queue_data(self.stream_id, view[offset:end], end_stream=end_stream and end == total):
                    self.conn.queued += end - offset
                    offset = end
                while offset < end:
                    size = min(end - offset, max_frame)
                    last = end_stream and offset + size == total
                    h2.send_data(self.stream_id, view[offset : offset + size], end_stream=last)
                    offset += size
                    self.conn.queued += size
                if contended:
                    turns.passed(self.stream_id)
                elif self.conn.queued > HIGH_WATER:  # the socket is the bottleneck: take turns from now on
                    contended, header = True, priority_of_headers(self.head.fields)
                self.conn.wake_writer()
                await self.conn.wait_flushable()
        finally:
            if contended:
                turns.leave(self.stream_id)
        self.bytes_sent += total
        if end_stream:
            if total == 0:
                self._check_open()
                if not h2.queue_data(self.stream_id, b"", end_stream=True):
                    h2.end_stream(self.stream_id)
                self.conn.wake_writer()
            turns.scheduler.forget(self.stream_id)
            self._response_finished()

    def send_data_nowait(self, data: bytes, room: asyncio.Future[None] | None = None) -> bool | None:
        """Queue ``data`` (no END_STREAM) at once if :meth:`send_data` would not have to wait; else do nothing.

        True only when the stream is open, no stream is waiting for its turn,
        ``data`` fits the flow-control windows and one QUANTUM, and the writer
        stays under its high-water mark: then send_data would return without
        waiting too. Lets an app on the hosted asyncio loop stream without a
        round trip through trio per chunk (h2gate.asgi.runner).

        None when only the writer's fill stood in the way and ``room`` (a
        future of the hosted loop) was given: it is resolved once the writer
        has drained or the connection is gone, and the caller may try again.
        Only streams without a priority signal wait this way (a stream with
        one takes the scheduler's path), and they take turns: one that was
        woken but found the writer full again is woken first next time, ahead
        of one that got chunks in. So they share the writer round-robin, one
        high-water mark at a time.
        """
        conn, h2, size = self.conn, self.conn.h2, len(data)
        if self.reset_code is not None or conn.closed or conn.turns.scheduler.busy or size > QUANTUM:
            return False
        try:
            if size > h2.local_flow_control_window(self.stream_id):
                return False
        except StreamClosedError:
            return False
        if conn.queued + size > HIGH_WATER:
            if room is None or not self._unsignalled():
                return False
            conn.drained.then(functools.partial(_resolve, room), ahead=self._room_unserved)
            self._room_unserved = True
            return None
        if not h2.queue_data(self.stream_id, data):
            return False
        self._room_unserved = False
        conn.queued += size
        self.bytes_sent += size
        conn.wake_writer()
        return True

    def _unsignalled(self) -> bool:
        """No priority header or PRIORITY_UPDATE: the stream is one of the round-robin crowd."""
        scheduler = self.conn.turns.scheduler
        return scheduler.priority(self.stream_id, priority_of_headers(self.head.fields)) is UNSIGNALLED

    async def _wait_window(self, deadline: float) -> None:
        """Wait for a window change; a stream whose window stays shut until ``deadline`` gets RST_STREAM CANCEL.

        The deadline runs from the moment the window closed, so WINDOW_UPDATEs
        that open nothing for this stream (or other streams' ones) do not extend it.
        """
        with trio.move_on_at(deadline) as stall:
            await self._writable.wait()
        if stall.cancelled_caught:
            timeout = self.conn.config.send_timeout
            log.info(
                "client %s gave stream %d no flow-control window for %gs (RST_STREAM CANCEL)",
                self.conn.peer_text,
                self.stream_id,
                timeout,
            )
            self.reset(ErrorCodes.CANCEL)
            raise ClientDisconnected(f"stream {self.stream_id}: no flow-control window within the send timeout")

    def _response_finished(self) -> None:
        self.response_ended = True
        if not self.request_ended:
            # The app answered without reading the whole body: stop the upload
            # (RFC 9113 §8.1) and give back the window its buffered bytes held.
            self.reset(ErrorCodes.NO_ERROR)
        self._check_done()

    def reset(self, code: ErrorCodes = ErrorCodes.INTERNAL_ERROR) -> None:
        """Reset the stream from our side (app fault, limit broken, early response)."""
        if self.reset_code is None and not self.conn.closed:
            try:
                self.conn.h2.reset_stream(self.stream_id, code)
                metrics.recorder.stream_reset("server", code)
            except (StreamClosedError, ProtocolError, FlowControlError):
                pass
            self.conn.wake_writer()
        self.on_reset(code)

    def _check_done(self) -> None:
        if self.response_ended and self.request_ended:
            self.done.set()
