"""What lets a stream's app run without a trio task of its own: its cancel handle and its sends that never wait.

Theory of operation. A :class:`~h2gate.protocol.stream.Stream` is normally
served by a task of the connection's nursery, inside a
:class:`trio.CancelScope` the core cancels through (a client reset gives the
app RESET_GRACE, shutdown's cut none). An HTTP request for an app on the
hosted asyncio loop starts without such a task (h2gate.asgi.http's
``OffTaskCall``): it puts its own :class:`AppScope` on the stream, whose
``deadline`` and ``cancel`` move the rest of the call into a real task first.

Meanwhile the app's ``send()`` runs on the asyncio side, where nothing may
wait in trio: :meth:`OffTaskSends.respond_nowait` and
:meth:`OffTaskSends.send_data_nowait` queue a response head and body chunks
at once when :meth:`Stream.send_headers` / :meth:`Stream.send_data` would not
have had to wait, and say False (nothing sent) otherwise, so the caller takes
the waiting path, which also reports a reset or a closed stream.

:class:`OffTaskSends` is a base of :class:`~h2gate.protocol.stream.Stream`
and holds no state of its own; it reads the stream's.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import trio

from h2gate.http.head import Headers
from h2gate.protocol.codec import StreamGone
from h2gate.protocol.limits import HIGH_WATER
from h2gate.protocol.priority import QUANTUM, UNSIGNALLED, priority_of_headers
from h2gate.protocol.stream_state import Move, State

if TYPE_CHECKING:
    from h2gate.errors import ClientDisconnected
    from h2gate.http.head import RequestHead
    from h2gate.protocol.core import ConnectionCore
    from h2gate.protocol.stream_state import StreamState

#: Seconds an app keeps running after its stream was reset before the response completed
#: (it sees http.disconnect at once): reset streams must not leave work behind (Rapid Reset).
RESET_GRACE = 1.0


class AppScope(Protocol):
    """How the core cancels a stream's app: a trio cancel scope, or what stands in for one.

    The driver enters a :class:`trio.CancelScope` around a stream's task. An
    adapter that serves a stream without a trio task of its own (the hosted
    asyncio loop, h2gate.asgi.http) puts an object here whose ``deadline`` and
    ``cancel`` move the rest of the call into a trio task with a real scope.
    """

    @property
    def deadline(self) -> float: ...
    @deadline.setter
    def deadline(self, value: float) -> None: ...
    def cancel(self) -> None: ...


class OffTaskSends:
    """The cancel handle and the sends that never wait, of :class:`~h2gate.protocol.stream.Stream`."""

    # The fields these methods set; Stream.__init__ fills them in.
    __slots__ = ("_room_unserved", "bytes_sent", "response_headers", "scope", "status")
    _room_unserved: bool
    bytes_sent: int
    response_headers: Headers
    scope: AppScope | None
    status: int

    # The stream's state these methods read (Stream.__init__ makes it) and the parts of Stream they call,
    # declared in the class body, not under TYPE_CHECKING, which a compiled build (bench/mypyc_tree.py)
    # refuses there. Stream implements every abstract one.
    _core: ConnectionCore
    reset_code: int | None
    state: StreamState
    stream_id: int

    @property
    @abstractmethod
    def head(self) -> RequestHead:
        """The request's pseudo-headers and regular fields, split once."""

    @property
    @abstractmethod
    def response_ended(self) -> bool:
        """The response's END_STREAM is queued."""

    @abstractmethod
    def _gone(self) -> ClientDisconnected:
        """The codec no longer has the stream open: reset it, and the error an app's send raises."""

    @abstractmethod
    def _response_finished(self) -> None:
        """The response is complete: stop the upload if the request is still open."""

    @abstractmethod
    def _sent_end(self) -> None:
        """Record that the response's END_STREAM is queued."""

    def cancel_app_soon(self) -> None:
        """The stream was cut before the response completed: cancel the app after RESET_GRACE."""
        if not self.response_ended:
            scope = self.app_scope()
            scope.deadline = min(scope.deadline, self._core.clock() + RESET_GRACE)

    def cancel_app(self) -> None:
        """Cancel the app now (shutdown's cut, the connection's end)."""
        self.app_scope().cancel()

    def app_scope(self) -> AppScope:
        """What cancels the app (a trio cancel scope, made now if nobody set one yet)."""
        scope = self.scope
        if scope is None:
            scope = self.scope = trio.CancelScope()
        return scope

    def send_data_nowait(self, data: bytes, on_room: Callable[[], object] | None = None) -> bool | None:
        """Queue ``data`` (no END_STREAM) at once if :meth:`send_data` would not have to wait; else do nothing.

        True only when the stream is open, no stream is waiting for its turn,
        ``data`` fits the flow-control windows and one QUANTUM, and the writer
        stays under its high-water mark: then send_data would return without
        waiting too. Lets an app on the hosted asyncio loop stream without a
        round trip through trio per chunk (h2gate.asgi.runner).

        None when only the writer's fill stood in the way and ``on_room`` (a
        plain function that must not raise) was given: it is called once the
        writer has drained or the connection is gone, and the caller may try again.
        Only streams without a priority signal wait this way (a stream with
        one takes the scheduler's path), and they take turns: one that was
        woken but found the writer full again is woken first next time, ahead
        of one that got chunks in. So they share the writer round-robin, one
        high-water mark at a time.
        """
        core, size = self._core, len(data)
        if self.reset_code is not None or core.turns.scheduler.busy or size > QUANTUM:
            return False
        if self.state.response is not State.HEADERS:
            return False
        try:
            if size > core.codec.window(self.stream_id):
                return False
        except StreamGone:
            return False
        if core.queued + size > HIGH_WATER:
            if on_room is None or not self._unsignalled():
                return False
            core.drained.then(on_room, ahead=self._room_unserved)
            self._room_unserved = True
            return None
        try:
            core.codec.send_data(self.stream_id, data, False)
        except StreamGone:
            return False
        self._room_unserved = False
        core.queued_data(size)
        self.bytes_sent += size
        core.wake()
        return True

    def respond_nowait(self, headers: Headers, body: bytes, *, end_stream: bool) -> bool:
        """The final HEADERS and ``body`` as their first DATA, queued at once if nothing has to wait for them.

        What :meth:`send_headers` then :meth:`send_data` would do, without a
        trip through the stream's task: only when the response has not
        started, no stream is waiting for its turn, ``body`` fits the
        flow-control windows and one QUANTUM, and the writer stays under its
        high-water mark. False (nothing sent) otherwise: the caller takes the
        waiting path, which also reports a reset or a closed stream. Lets a
        small response from an app on the hosted asyncio loop leave without
        waking trio for it (h2gate.asgi.runner).
        """
        core, size = self._core, len(body)
        if (
            self.reset_code is not None
            or self.state.response is not State.IDLE
            or core.turns.scheduler.busy
            or size > QUANTUM
            or core.queued + size > HIGH_WATER
        ):
            return False
        codec, sid = core.codec, self.stream_id
        headers_end = end_stream and not size
        try:
            if size and size > codec.window(sid):
                return False
            codec.send_headers(sid, headers, headers_end)
        except StreamGone:
            return False  # nothing sent: the waiting path finds it gone and says so
        self.state.apply(Move.SEND_HEADERS_END if headers_end else Move.SEND_HEADERS)
        self.status = int(headers[0][1])
        self.response_headers = headers
        core.wake()
        if headers_end:
            self._response_finished()
        elif size:
            try:
                codec.send_data(sid, body, end_stream)
            except StreamGone:
                self._gone()  # reset; the app learns it at its next send or receive
                return True
            core.queued_data(size)
            self.bytes_sent += size
            if end_stream:
                self._sent_end()
        return True

    def _unsignalled(self) -> bool:
        """No priority header or PRIORITY_UPDATE: the stream is one of the round-robin crowd."""
        scheduler = self._core.turns.scheduler
        return scheduler.priority(self.stream_id, priority_of_headers(self.head.fields)) is UNSIGNALLED
