"""One app call on the hosted asyncio loop: the traffic between the app's asyncio task and trio.

Theory of operation. The app runs as an asyncio task on the loop that
:class:`h2gate.asgi.runner.AsyncioRunner` hosts inside the trio run. What its
``send()`` can do on the asyncio side (``local_send``: queue a small response
on the stream) it does there, without trio. Whatever has to wait in trio (a
body still arriving, a shut flow-control window, a full writer, a final
message, a fault to answer) is queued on the :class:`Bridge` and done by a trio
task: the one that called :meth:`AsyncioRunner.call`, or, for a call started
without one (:meth:`AsyncioRunner.start`), a task its :class:`Owner` starts
when ``need_trio`` is first called, which then awaits :meth:`Bridge.serve`.
A call that never needs trio ends with ``Owner.app_done`` from the app's own
task. :meth:`Bridge.release` drops the references that would make the call's
objects cyclic garbage.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import trio

from h2gate.asgi.types import ASGIApp, Message, Receive, Scope, Send
from h2gate.errors import ClientDisconnected

log = logging.getLogger("h2gate.error")

#: Handles a message on the asyncio side without trio: True if done, False if trio must send it,
#: None to try again once the callback it was given (a plain function, "room!") has been called.
LocalSend = Callable[[Message, Callable[[], object]], "bool | None"]


class Owner(Protocol):
    """Who serves a call started without a trio task (:meth:`AsyncioRunner.start`)."""

    def need_trio(self) -> None:
        """Something has to wait in trio: start a task that awaits :meth:`Bridge.serve` (called at most once)."""

    def app_done(self, outcome: BaseException | None) -> None:
        """The app returned (or raised ``outcome``) and nothing ever had to wait in trio: finish the call.

        Called from the app's task, in its last step; must not raise."""


def _ignore() -> None:
    pass


async def _ignore_async(*args: object) -> Any:
    raise ClientDisconnected("the stream is finished")


class Bridge:
    """One app call's traffic between its asyncio task and the trio task serving it.

    The asyncio side appends to ``outbox`` (messages to send, in order, with
    the future the app waits on, or None for a final message it need not wait
    for) or to ``requests`` (other I/O, e.g. ``receive()``, which may wait for
    as long as the client likes) and sets ``wake``. The trio side
    (:meth:`serve`) sends the outbox itself, one message after the other
    (each send is bounded: flow control waits end with ``--send-timeout`` or a
    reset), and runs each request as a task of its own. A call started
    without a trio task has ``owner`` and no ``wake`` until the first such
    message or request asks the owner for one (:meth:`attach`).
    """

    __slots__ = (
        "app",
        "final",
        "first",
        "local_send",
        "loop",
        "on_room",
        "open",
        "outbox",
        "outcome",
        "owner",
        "receive",
        "requests",
        "room",
        "scope",
        "send",
        "sending",
        "task",
        "wake",
    )  # fmt: skip

    def __init__(
        self,
        app: ASGIApp,
        loop: asyncio.AbstractEventLoop,
        scope: Scope,
        receive: Receive,
        send: Send,
        first: Message | None,
        local_send: LocalSend | None,
        final: Callable[[Message], bool] | None,
        owner: Owner | None,
    ) -> None:
        self.app, self.loop, self.scope = app, loop, scope
        self.receive, self.send, self.first, self.local_send, self.final = receive, send, first, local_send, final
        self.task: asyncio.Task[None] | None = None
        self.open = True  # the trio side still takes requests
        self.sending = False  # the trio side is sending a message from the outbox
        self.outbox: deque[tuple[Message, asyncio.Future[None] | None]] = deque()
        self.requests: deque[tuple[asyncio.Future[Any], Callable[..., Awaitable[Any]], tuple[Any, ...]]] = deque()
        self.owner = owner  # serves the call while no trio task does (AsyncioRunner.start)
        #: Set for the trio side when the app has something for it; None while no trio task serves the call.
        self.wake: trio.Event | None = None if owner is not None else trio.Event()
        self.outcome: BaseException | None = None  # what the app raised
        self.room: asyncio.Future[None] | None = None  # what app_send waits on after local_send said None
        self.on_room = self._room_ready  # bound once: local_send is given it for every chunk

    # asyncio side -------------------------------------------------------------------

    def start(self) -> None:
        # The app is called inside the task's first step, in a turn of the loop:
        # code that runs when it is called (not awaited) may ask for the running loop.
        loop = self.loop
        if loop.get_task_factory() is None:  # what create_task would do, less its checks and its frame
            self.task = asyncio.Task(_call_app(self), loop=loop)
        else:
            self.task = loop.create_task(_call_app(self))

    def _room_ready(self) -> None:
        """Called from the trio side once the writer drained: the app may try its chunk again."""
        room, self.room = self.room, None
        if room is not None and not room.done():  # the app's task may have been cancelled meanwhile
            room.set_result(None)

    def attach(self) -> None:
        """From now on a trio task serves the call: ask the owner for one (once)."""
        owner = self.owner
        if owner is not None:
            self.owner = None
            self.wake = trio.Event()
            owner.need_trio()

    def _notify(self) -> None:
        """The asyncio side queued something for trio."""
        if self.wake is None:
            self.attach()
        assert self.wake is not None
        self.wake.set()

    async def serve(self) -> BaseException | None:
        """The trio side: serve the app's traffic until it has returned; what it raised, or None.

        Cancelled, it cancels the app's task (without waiting for it) and re-raises.
        """
        errors: list[BaseException] = []
        try:
            # Most small requests never ask trio for I/O: no nursery until one does.
            if not await _pump(self, self.send, errors, None):
                async with trio.open_nursery() as nursery:
                    try:
                        await _pump(self, self.send, errors, nursery)
                    finally:
                        self.open = False
                        nursery.cancel_scope.cancel()
        except BaseException:
            self.loop.call_soon(self.cancel)
            raise
        finally:
            self.open = False
        outcome = errors[0] if errors else self.outcome
        self.release()
        return outcome

    def release(self) -> None:
        """The call is over: drop the references that make cycles (task, bound methods), so that
        reference counting frees the call's objects at once instead of the cyclic garbage collector."""
        self.task = None
        self.owner = None
        self.outcome = None
        self.on_room = _ignore
        self.local_send = self.final = None
        self.receive = self.send = _ignore_async  # type: ignore[assignment]

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task.add_done_callback(_abandoned)

    async def app_receive(self) -> Message:
        first = self.first
        if first is not None:
            self.first = None
            return first
        return await self._remote(self.receive, ())  # type: ignore[no-any-return]

    async def app_send(self, message: Message) -> None:
        # local_send may queue body bytes itself: only when no earlier message is still on its way.
        while self.local_send is not None and not self.outbox and not self.sending:
            handled = self.local_send(message, self.on_room)
            if handled:
                return
            if handled is not None:
                break
            # Only the writer's fill stood in the way: wait until it has drained (or the connection is gone).
            room = self.room = self.loop.create_future()
            await room
        if not self.open:  # a task the app left running after its call ended
            raise ClientDisconnected("the stream is finished")
        if self.final is not None and self.final(message):
            self.outbox.append((message, None))
            self._notify()
            return
        future: asyncio.Future[None] = self.loop.create_future()
        self.outbox.append((message, future))
        self._notify()
        await future

    async def _remote(self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> Any:
        if not self.open:  # a task the app left running after its call ended
            raise ClientDisconnected("the stream is finished")
        future: asyncio.Future[Any] = self.loop.create_future()
        self.requests.append((future, fn, args))
        self._notify()
        return await future


def _abandoned(task: asyncio.Task[None]) -> None:
    """The outcome of an app task whose stream was cancelled: nobody else will read it.

    Cleanup that sends after the cancellation (connectrpc ends its response)
    meets ClientDisconnected: expected, and no news. Anything else is the
    app's, logged once rather than left to asyncio's "never retrieved".
    """
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None and not isinstance(exc, ClientDisconnected):
        log.warning("the app raised while its cancelled stream was ending", exc_info=exc)


async def _call_app(bridge: Bridge) -> None:
    """The app's task. What it raised is kept for the trio side (a cancellation is raised on).

    Its end wakes the trio side from here, not from a done callback: the trio
    task runs after this turn of the loop, when the task is done, and a
    callback would cost a handle and a step of the loop per request. A call
    no trio task serves is finished by its owner from here. (A task cancelled
    before its first step never runs this; by then the trio side has stopped waiting.)
    """
    try:
        await bridge.app(bridge.scope, bridge.app_receive, bridge.app_send)
    except asyncio.CancelledError as exc:
        bridge.outcome = exc
        raise
    except BaseException as exc:  # SystemExit and KeyboardInterrupt too: that request answers 500
        bridge.outcome = exc
    finally:
        wake = bridge.wake
        if wake is not None:
            wake.set()
        else:
            owner = bridge.owner
            bridge.owner = None
            if owner is not None:
                try:
                    owner.app_done(bridge.outcome)
                except Exception:
                    log.exception("internal error finishing a request")


async def _pump(bridge: Bridge, send: Send, errors: list[BaseException], nursery: trio.Nursery | None) -> bool:
    """Serve the app's traffic until it returns (True), or until it asks for I/O and ``nursery`` is None (False)."""
    while True:
        assert bridge.wake is not None
        await bridge.wake.wait()
        bridge.wake = trio.Event()
        outbox = bridge.outbox
        while outbox:
            message, future = outbox.popleft()
            bridge.sending = True
            try:
                await send(message)
            except trio.Cancelled:
                if future is not None and not future.done():
                    future.set_exception(ConnectionError("the stream was cancelled"))
                raise
            except Exception as exc:  # the app's send() raises it; a final message's waits for the end
                if future is None:
                    errors.append(exc)
                elif not future.done():
                    future.set_exception(exc)
            else:
                if future is not None and not future.done():
                    future.set_result(None)
            finally:
                bridge.sending = False
        requests = bridge.requests
        if requests:
            if nursery is None:
                bridge.wake.set()  # handled again once the nursery is open
                return False
            while requests:
                nursery.start_soon(_run_and_resolve, *requests.popleft())
        task = bridge.task
        if task is not None and task.done() and not bridge.outbox:
            return True


async def _run_and_resolve(
    future: asyncio.Future[Any], fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]
) -> None:
    """Trio side of one app request; the asyncio future (same thread) gets the outcome."""
    try:
        result = await fn(*args)
    except trio.Cancelled:
        if not future.done():
            future.set_exception(ConnectionError("the stream was cancelled"))
        raise
    except BaseException as exc:  # handed to the app, which owns the error
        if not future.done():
            future.set_exception(exc)
    else:
        if not future.done():
            future.set_result(result)
