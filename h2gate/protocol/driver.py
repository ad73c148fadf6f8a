"""The trio side of one connection: it moves bytes and runs tasks; the core decides.

Theory of operation. A connection is one task (the one the server runs it
in) and one nursery of stream tasks (one per request, running the app
through an adapter). The handler is called as the core admits a stream: it
returns the coroutine for the stream's task, or None when the adapter serves
the stream without one (an app on the hosted asyncio loop whose response
needs no waiting, h2gate.asgi.http); such an adapter ends the stream with
:meth:`Connection.stream_done`, or moves the rest into a task with
:meth:`Connection.start_task` as soon as something has to wait in trio, or
the core cancels the app (:class:`h2gate.protocol.stream_offtask.AppScope`). The I/O:

* the connection's own task is the *reader*: it hands each read to
  :meth:`ConnectionCore.receive`; once the core is CLOSED it keeps reading
  and discards, so a client that is still writing reads our GOAWAY instead of
  a TCP reset (bounded in time and bytes);
* the *writer* is the only code that sends on the transport. It is a task in
  the streams' nursery that exists only while there is something to write or
  a stream that may write: the core's wake-up starts it when none runs, and it
  ends once nothing is queued and no stream is open (an idle connection is one
  waiting task, not three: bench/README.md, "Idle connection memory"). Each
  time it takes everything queued (:meth:`ConnectionCore.data_to_send`) and
  sends it in one call, so frames made by a batch of input or by several
  streams go out together; a client that takes nothing for ``send_timeout``
  seconds is dropped;
* no task of its own sleeps until the core's earliest deadline: the run's
  one timer task (:mod:`h2gate.protocol.timers`) calls
  :meth:`ConnectionCore.on_timer` when it comes.

Whenever the connection goes idle (no stream left, nothing left to write)
the transport may give back buffers sized for its busiest moment
(:meth:`h2gate.tls.stream.TLSStream.release_buffers`).

The connection ends when the core is CLOSED: the writer gets ``FLUSH_TIME``
to put the last bytes (the GOAWAY) on the wire, the reader goes on
discarding for ``LINGER_TIME`` after that if the close was ours (the close
sets the reader's deadline, the writer's last write shortens it), the
writer is stopped, the transport is closed, and the stream tasks get
``graceful_timeout`` to notice (each already failed its next read or send as
a disconnect) before they are cancelled; an app still running without a task
of its own is cancelled then too, by a task started for it in the (cancelled)
nursery, so nothing outlives the connection.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable

import trio

from h2gate.config import Config
from h2gate.errors import ErrorCode, SendTimeout
from h2gate.net.negotiate import H2CUpgrade
from h2gate.net.socket_send import Send, sender
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


def run_clock() -> Callable[[], float]:
    """The trio run's clock, read in one call: what ``trio.current_time`` returns, without its two hops
    through the run (the core reads it once a read and once a write). ``trio.current_time`` outside a run."""
    try:
        return trio.lowlevel.current_clock().current_time
    except RuntimeError:
        return trio.current_time


def peer_text(transport: Transport) -> str:
    """Who the peer is, for log lines."""
    peer = transport.peer
    return f"{peer[0]}:{peer[1]}" if peer and peer[1] is not None else "unix socket"


class Connection:
    """One HTTP/2 connection served over ``transport`` (see the module docstring)."""

    # Slots: thousands of these sit idle at once (bench/README.md, "Idle connection memory").
    __slots__ = (
        "__weakref__", "_broken", "_grace", "_nursery", "_pending", "_read_scope", "_stopped", "_timer",
        "_wake_event", "_writer_on", "_writer_scope", "config", "core", "frame_tap", "handler", "peer_text",
        "transport", "upgrade",
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
            clock=run_clock(),
            extended_connect=extended_connect,
            upgraded=upgrade is not None,
        )
        self.core.frame_tap = frame_tap
        self.core.on_closed = self._closed
        self._nursery: trio.Nursery | None = None
        self._pending = False  # the core queued something since the writer last took the output
        self._writer_on = False  # a writer task exists (started, or about to start)
        self._writer_scope: trio.CancelScope | None = None  # the running writer's, to stop it at the end
        self._wake_event: trio.Event | None = None  # the writer waits on it (it has nothing to write, streams run)
        self._read_scope: trio.CancelScope | None = None  # the reader's, while it reads: the close times it
        self._stopped = False  # run() is ending: no writer starts any more
        self._broken = False  # the transport failed: nothing more can be sent
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
        async with trio.open_nursery() as streams:
            self._nursery = streams
            try:
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
                    await self._reader()
                    await self._flush()
                finally:
                    self._timer.close()
                    self._stopped = True
                    core.lost()  # whatever ended the I/O, nothing more reaches the client
                    await self._stop_writer()
                    with trio.CancelScope(shield=True), trio.move_on_after(1):
                        await self.transport.stream.aclose()
                # Apps saw http.disconnect / ClientDisconnected already; give them a bounded moment.
                with trio.move_on_after(self.config.graceful_timeout):
                    while core.streams:
                        await core.streams_changed.wait()
                streams.cancel_scope.cancel()
            finally:
                self._cancel_untasked_apps()

    def _cancel_untasked_apps(self) -> None:
        """However run() ends, an app still running without a task of its own (see the module docstring)
        is cancelled, by a task started for it in the streams' nursery, before that nursery closes.

        A plain call in a ``finally`` rather than an async context manager: the connection's task
        would otherwise keep that manager's generator frame for its whole life (about 0.5 KiB an
        idle connection)."""
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
        if not self.core.streams:
            event = self._wake_event
            if event is not None:  # the writer waits with nothing to write: it ends (and releases)
                self._wake_event = None
                event.set()
            elif not self._writer_on:
                self._release()  # idle, and no writer: else the writer releases once it has written

    async def _answer_413(self, stream: Stream) -> None:
        started = time.perf_counter()
        await simple_response(stream, 413, b"Request body too large\n", self.config.server_header)
        head = stream.head
        path, _, query = head.target.partition(b"?")
        scope = {"method": head.method.decode("latin-1"), "raw_path": path, "query_string": query}
        access_log(self.transport, scope, stream, time.perf_counter() - started)

    # -- the writer ------------------------------------------------------------------------------------------------

    def _wake(self) -> None:
        """The core queued bytes: wake the writer, or start one."""
        self._pending = True
        event = self._wake_event
        if event is not None:
            self._wake_event = None
            event.set()
        elif not self._writer_on and not self._stopped and not self._broken and self._nursery is not None:
            self._writer_on = True
            self._nursery.start_soon(self._writer)

    def _release(self) -> None:
        """The connection went idle: the core and the transport may give back memory sized for its busiest moment."""
        self.core.release()
        release = getattr(self.transport.stream, "release_buffers", None)
        if release is not None:
            release()

    async def _writer(self) -> None:
        """Write what the core queues until nothing is queued and no stream is left to queue more."""
        core = self.core
        if self._stopped:  # started too late: run() is over
            self._writer_on = False
            return
        send_all = sender(self.transport.stream)  # TLSStream's own, or the raw loop for h2c on a socket
        try:
            with trio.CancelScope() as self._writer_scope:
                while True:
                    if not self._pending:
                        if core.closed or not core.streams:
                            break  # nothing to write, and nobody left to queue more: this task ends
                        event = self._wake_event = trio.Event()
                        await event.wait()
                        continue
                    self._pending = False
                    data = core.data_to_send()
                    if data:
                        await self._send_within_timeout(send_all, data)
                        metrics.recorder.bytes_sent(len(data))
                        del data  # not kept while the writer waits: a download's last batch can be 256 KiB
                    core.drained.fire()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            log.debug("connection from %s lost while writing: %r", self.peer_text, exc)
            self._broken = True
            core.lost()
        finally:
            self._writer_on = False
            self._writer_scope = self._wake_event = None
        if self._stopped:
            core.drained.fire()  # _stop_writer waits for this
            return
        if not core.streams and not self._broken:
            self._release()
        core.drained.fire()
        if core.closed:
            self._flushed()

    async def _send_within_timeout(self, send: Send, data: bytes) -> None:
        """Write ``data``; a client that has not taken it all within ``send_timeout`` seconds is dropped.

        Raises SendTimeout (a trio.BrokenResourceError) then. The deadline is
        the sender's to keep (h2gate.net.socket_send): it costs only when the socket is full.
        """
        timeout = self.core.send_timeout
        try:
            await send(data, self.core.clock() + timeout if timeout else math.inf)
        except SendTimeout:
            log.warning(
                "closing connection from %s: it did not read our bytes for %gs (send timeout)", self.peer_text, timeout
            )
            raise

    async def _flush(self) -> None:
        """Give the writer a bounded moment to put the last frames on the wire (the reader has stopped)."""
        with trio.move_on_after(FLUSH_TIME):
            while self._writer_on and not self._broken:
                await self.core.drained.wait()

    async def _stop_writer(self) -> None:
        """Cancel the writer, if one runs, and wait for it to end: the transport closes next."""
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            while self._writer_on:
                if self._writer_scope is None:  # spawned, not yet started: it sees _stopped and ends
                    return
                self._writer_scope.cancel()
                await self.core.drained.wait()

    # -- the reader (the connection's own task) and the close ----------------------------------------------------

    async def _reader(self) -> None:
        core = self.core
        stream = self.transport.stream
        receive_some = stream.receive_some
        # TLS: after a short read the next wait is on the socket itself, on a short stack
        # (TLSStream.transport_readable): a connection that goes idle waits there.
        readable: Callable[[], Awaitable[None] | None] | None = getattr(stream, "transport_readable", None)
        short = False  # the last read took all there was
        discarded = 0
        try:
            with trio.CancelScope() as self._read_scope:
                if core.closed:  # closed before the first read
                    self._closed()
                while discarded < LINGER_BYTES:
                    if short and readable is not None:
                        waiting = readable()
                        if waiting is not None:
                            await waiting
                    data = await receive_some(READ_SIZE)
                    short = len(data) < READ_SIZE
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
            self._read_scope = None
        core.lost()

    def _closed(self) -> None:
        """The core is CLOSED: the reader reads on (discarding) while the writer flushes, and lingers if it was ours."""
        scope = self._read_scope
        if scope is not None:
            scope.deadline = trio.current_time() + FLUSH_TIME + (LINGER_TIME if self.core.linger else 0.0)

    def _flushed(self) -> None:
        """The last bytes are out after the close: the reader lingers ``LINGER_TIME`` if the close was ours."""
        scope = self._read_scope
        if scope is None:
            return
        if self.core.linger and not self._broken:
            scope.deadline = min(scope.deadline, trio.current_time() + LINGER_TIME)
        else:
            scope.cancel()

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
