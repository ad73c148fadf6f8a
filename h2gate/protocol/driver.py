"""The trio side of one connection: it moves bytes and runs tasks; the core decides.

Theory of operation. A connection is one nursery of stream tasks (one per
request, running the app through an adapter) around one nursery of I/O
tasks. The handler is called as the core admits a stream: it returns the
coroutine for the stream's task, or None when the adapter serves the stream
without one (an app on the hosted asyncio loop whose response needs no
waiting, h2gate.asgi.http); such an adapter ends the stream with
:meth:`Connection.stream_done`, or moves the rest into a task with
:meth:`Connection.start_task` as soon as something has to wait in trio, or
the core cancels the app (:class:`h2gate.protocol.stream.AppScope`). The
I/O tasks:

* the *reader* hands each read to :meth:`ConnectionCore.receive`; once the
  core is CLOSED it keeps reading and discards, so a client that is still
  writing reads our GOAWAY instead of a TCP reset (bounded in time and bytes);
* the *writer* is the only code that sends on the transport: woken by the
  core, it takes everything queued (:meth:`ConnectionCore.data_to_send`) and
  sends it in one call, so frames made by a batch of input or by several
  streams go out together; a client that takes nothing for ``send_timeout``
  seconds is dropped;
* no task of its own sleeps until the core's earliest deadline: the run's
  one timer task (:mod:`h2gate.protocol.timers`) calls
  :meth:`ConnectionCore.on_timer` when it comes, so an idle connection is
  two waiting tasks, not three.

Whenever the connection goes idle (no stream left, nothing left to write)
the transport may give back buffers sized for its busiest moment
(:meth:`h2gate.tls.stream.TLSStream.release_buffers`).

The connection ends when the core is CLOSED: the last bytes are flushed
(bounded), the reader lingers if the close was ours, the transport is closed,
and the stream tasks get ``graceful_timeout`` to notice (each already failed
its next read or send as a disconnect) before they are cancelled; an app
still running without a task of its own is cancelled then too, by a task
started for it in the (cancelled) nursery, so nothing outlives the connection.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import trio

from h2gate.config import Config
from h2gate.errors import ErrorCode
from h2gate.net.negotiate import H2CUpgrade
from h2gate.net.socket_send import Send, SendTimeout, sender
from h2gate.net.transport import Transport
from h2gate.observe import metrics
from h2gate.observe.logs import access_log
from h2gate.protocol import codec as ev
from h2gate.protocol.core import ConnectionCore
from h2gate.protocol.replies import simple_response
from h2gate.protocol.stream import Stream
from h2gate.protocol.timers import TimerHandle, timers

log = logging.getLogger("h2gate.error")

READ_SIZE = 256 * 1024
#: After the close is ours, how long (s) and how much (bytes) the reader goes on discarding before we close.
LINGER_TIME, LINGER_BYTES = 1.0, 4 * 1024 * 1024
#: How long the last frames (the GOAWAY) get to reach the socket once the core is CLOSED.
FLUSH_TIME = 1.0

#: The coroutine that serves a stream in its own task, or None: the adapter serves it without one (see above).
StreamHandler = Callable[["Connection", Stream], Awaitable[None] | None]
FrameTap = Callable[[ConnectionCore, ev.Event], None]


async def _raise(exc: Exception) -> None:
    raise exc


def peer_text(transport: Transport) -> str:
    """Who the peer is, for log lines."""
    peer = transport.peer
    return f"{peer[0]}:{peer[1]}" if peer and peer[1] is not None else "unix socket"


class Connection:
    """One HTTP/2 connection served over ``transport`` (see the module docstring)."""

    # Slots: thousands of these sit idle at once (bench/README.md, "Idle connection memory").
    __slots__ = (
        "__weakref__", "_broken", "_grace", "_nursery", "_reader_done", "_timer", "_wake_event", "_writing",
        "config", "core", "frame_tap", "handler", "peer_text", "transport", "upgrade",
    )  # fmt: skip

    def __init__(
        self,
        transport: Transport,
        config: Config,
        handler: StreamHandler,
        upgrade: H2CUpgrade | None = None,
        *,
        extended_connect: bool = True,
        frame_tap: FrameTap | None = None,
    ) -> None:
        self.transport = transport
        self.config = config
        self.handler = handler
        self.upgrade = upgrade
        self.frame_tap = frame_tap
        self.peer_text = peer_text(transport)
        self.core = ConnectionCore(
            config,
            peer=self.peer_text,
            scheme=transport.scheme,
            spawn=self._spawn,
            wake=self._wake,
            extended_connect=extended_connect,
            upgraded=upgrade is not None,
        )
        self.core.frame_tap = frame_tap
        self._wake_event = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._writing = False
        self._broken = False  # the transport failed: nothing more can be sent
        self._reader_done = trio.Event()
        self._grace: float | None = None  # shutdown() came before run()
        self._timer: TimerHandle | None = None  # our place in the run's timer heap, while run() runs

    @property
    def open_streams(self) -> int:
        """Streams whose app still runs: a connection with none is idle."""
        return self.core.open_streams

    @property
    def requests(self) -> int:
        return self.core.requests

    def shutdown(self, grace: float | None = None) -> None:
        """Graceful close: drain, and cut what still runs after ``grace`` seconds (default --graceful-timeout)."""
        grace = self.config.graceful_timeout if grace is None else grace
        if self._nursery is None:
            self._grace = grace
        else:
            self.core.shutdown(grace)

    # -- lifetime ------------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until it is done; never raises for the peer's misbehaviour."""
        core = self.core
        async with trio.open_nursery() as streams, self._apps_cancelled_at_end():
            self._nursery = streams
            upgrade = self.upgrade
            if upgrade is None:
                core.start()
            else:
                core.start((list(upgrade.headers), upgrade.body), upgrade.settings)
            if self._grace is not None:
                core.shutdown(self._grace)
            self._timer = timers().handle(self._due)
            self._deadlines_moved()
            try:
                async with trio.open_nursery() as io:
                    io.start_soon(self._writer)
                    io.start_soon(self._reader)
                    await core.ended.wait()
                    await self._flush()
                    if core.linger and not self._broken:
                        with trio.move_on_after(LINGER_TIME):
                            await self._reader_done.wait()
                    io.cancel_scope.cancel()
            finally:
                self._timer.close()
                core.lost()  # whatever ended the I/O, nothing more reaches the client
                with trio.CancelScope(shield=True), trio.move_on_after(1):
                    await self.transport.stream.aclose()
            # Apps saw http.disconnect / ClientDisconnected already; give them a bounded moment.
            with trio.move_on_after(self.config.graceful_timeout):
                while core.streams:
                    await core.streams_changed.wait()
            streams.cancel_scope.cancel()

    @contextlib.asynccontextmanager
    async def _apps_cancelled_at_end(self) -> AsyncIterator[None]:
        """However run() ends, an app still running without a task of its own (see the module docstring)
        is cancelled, by a task started for it in the streams' nursery, before that nursery closes."""
        try:
            yield
        finally:
            for stream in list(self.core.streams.values()):
                if not isinstance(stream.scope, trio.CancelScope):
                    stream.cancel_app()

    def _spawn(self, stream: Stream) -> None:
        """The core admitted ``stream``: serve it, in a task of its own unless the handler needs none."""
        work: Awaitable[None] | None
        if stream.too_large:
            work = self._answer_413(stream)
        else:
            try:
                work = self.handler(self, stream)
            except Exception as exc:
                work = _raise(exc)  # reported and answered in the stream's task, as a fault in it would be
            if work is None:
                return  # the adapter ends it with stream_done, or moves it into a task with start_task
        self.start_task(stream, work)

    def start_task(self, stream: Stream, work: Awaitable[None]) -> None:
        """Serve ``stream`` by awaiting ``work`` in a task of the connection's nursery, inside ``stream.scope``
        (a trio.CancelScope, made if there is none); :meth:`stream_done` is called when it ends."""
        assert self._nursery is not None
        self._nursery.start_soon(self._run_stream, stream, work)

    async def _run_stream(self, stream: Stream, work: Awaitable[None]) -> None:
        scope = stream.scope
        if not isinstance(scope, trio.CancelScope):
            scope = stream.scope = trio.CancelScope()
        try:
            with scope:
                await work
        except Exception:
            # Adapters turn app faults into 500/RST themselves; this is our own
            # bug, and it still must not take the other streams down with it.
            log.exception("internal error on stream %d from %s (stream reset)", stream.stream_id, self.peer_text)
            stream.reset(ErrorCode.INTERNAL_ERROR)
        finally:
            self.stream_done(stream)

    def stream_done(self, stream: Stream) -> None:
        """``stream`` has been served (exactly once per admitted stream: by its task, or by the adapter)."""
        self.core.stream_finished(stream)
        if not self.core.streams and not self._writing and not self._wake_event.is_set():
            self._release()  # idle, and the writer has nothing left: else it releases after writing

    async def _answer_413(self, stream: Stream) -> None:
        started = time.perf_counter()
        await simple_response(stream, 413, b"Request body too large\n", self.config.server_header)
        head = stream.head
        path, _, query = head.target.partition(b"?")
        scope = {"method": head.method.decode("latin-1"), "raw_path": path, "query_string": query}
        access_log(self.transport, scope, stream, time.perf_counter() - started)

    # -- I/O tasks ---------------------------------------------------------------------------------------------------

    def _wake(self) -> None:
        self._wake_event.set()

    def _release(self) -> None:
        """The connection went idle: the transport may give back buffers sized for its busiest moment."""
        release = getattr(self.transport.stream, "release_buffers", None)
        if release is not None:
            release()

    async def _flush(self) -> None:
        """Give the writer a bounded moment to put the last frames (GOAWAY) on the wire."""
        with trio.move_on_after(FLUSH_TIME):
            while (self._wake_event.is_set() or self._writing) and not self._broken:
                await self.core.drained.wait()

    async def _writer(self) -> None:
        core = self.core
        send_all = sender(self.transport.stream)  # TLSStream's own, or the raw loop for h2c on a socket
        try:
            while True:
                await self._wake_event.wait()
                self._wake_event = trio.Event()
                data = core.data_to_send()
                if data:
                    self._writing = True
                    await self._send_within_timeout(send_all, data)
                    metrics.recorder.bytes_sent(len(data))
                    self._writing = False
                    del data  # not kept while the writer waits: a download's last batch can be 256 KiB
                    if not core.streams:
                        self._release()
                core.drained.fire()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            log.debug("connection from %s lost while writing: %r", self.peer_text, exc)
            self._broken = True
            core.lost()

    async def _send_within_timeout(self, send: Send, data: bytes) -> None:
        """Write ``data``; a client that has not taken it all within ``send_timeout`` seconds is dropped.

        Raises SendTimeout (a trio.BrokenResourceError) then. The deadline is
        the sender's to keep (h2gate.net.socket_send): it costs only when the socket is full.
        """
        timeout = self.core.send_timeout
        try:
            await send(data, trio.current_time() + timeout if timeout else math.inf)
        except SendTimeout:
            log.warning(
                "closing connection from %s: it did not read our bytes for %gs (send timeout)", self.peer_text, timeout
            )
            raise

    async def _reader(self) -> None:
        core = self.core
        receive_some = self.transport.stream.receive_some
        discarded = 0
        try:
            while discarded < LINGER_BYTES:
                data = await receive_some(READ_SIZE)
                metrics.recorder.bytes_received(len(data))
                if not data:
                    log.debug("connection from %s closed by peer", self.peer_text)
                    break
                if core.closed:
                    discarded += len(data)
                    continue
                core.receive(data)
                del data  # not kept while the next read waits: an upload's last read can be 256 KiB
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            log.debug("connection from %s lost: %r", self.peer_text, exc)
        finally:
            self._reader_done.set()
        core.lost()

    # -- time (h2gate.protocol.timers calls _due in its own task) -----------------------------------------------

    def _deadlines_moved(self) -> None:
        """A deadline earlier than all others was armed: ask to be woken then (and to hear of the next one)."""
        deadlines = self.core.deadlines
        deadlines.moved_earlier.then(self._deadlines_moved)
        if self._timer is not None:
            self._timer.at(deadlines.earliest)

    def _due(self) -> None:
        """The earliest deadline came (or one that has moved since): act on what is due, then ask again."""
        core = self.core
        try:
            if trio.current_time() >= core.deadlines.earliest:
                core.on_timer()
        except Exception:
            # Our own bug; it runs in the timer task of every connection, so it must not escape.
            log.exception("internal error in the deadlines of the connection from %s; it was closed", self.peer_text)
            core.lost()
        if self._timer is not None:
            self._timer.at(core.deadlines.earliest)
