"""Where the ASGI app's coroutines run: in the server's trio loop, or in asyncio.

Most ASGI apps (Django, anything using asyncio libraries) need an asyncio event
loop; apps written for trio or anyio can run in trio directly. ``--loop
asyncio`` (the default) hosts an asyncio loop inside the trio run, on the same
thread, as Uvicorn and Hypercorn run apps on their own loop: a driver task
(:meth:`AsyncioRunner.drive`) runs the loop one turn at a time whenever it has
work, and parks in trio while it has none, woken by the loop's own selector
(sockets the app opened, other threads' ``call_soon_threadsafe``), by its next
timer or by new callbacks. No message crosses a thread, so no lock, wake-up
syscall or GIL hand-over is paid per request. Each ``receive()``/``send()``
that has to wait in trio runs as a trio task in the stream's nursery with its
result set on an asyncio future; the message that ends a response travels
with the news that the app returned. As with any single-loop server, an app
that blocks its event loop (``time.sleep`` in ``async def``) stalls the whole
worker until it yields.

A call is served by a trio task from its start (:meth:`AsyncioRunner.call`),
or starts without one (:meth:`AsyncioRunner.start`, an HTTP request): its
owner is told when the app returns (``app_done``, from the app's own task)
if nothing had to wait in trio meanwhile; the first message or request that
has to wait asks the owner for a trio task instead (``need_trio``), which then
serves the rest as :meth:`Bridge.serve`. Most small requests never need one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import selectors
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import sniffio
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


#: how long close() lets cancelled asyncio tasks (a lifespan that never returned, background work) finish
CLOSE_TIMEOUT = 5.0


#: Exceptions that, raised under --loop trio, mean the app needs an asyncio loop: (type, words in its message).
_NEEDS_ASYNCIO = (
    (RuntimeError, "no running event loop"),  # asyncio.get_running_loop(), asgiref's sync_to_async
    (RuntimeError, "no current event loop"),  # asyncio.get_event_loop() outside a loop
    (TypeError, "trio.run received unrecognized yield message"),  # an asyncio future awaited in trio
)
LOOP_HINT = (
    " (this looks like an app that needs asyncio, as Django, Channels and asgiref do: "
    "run it with --loop asyncio, the default, instead of --loop trio)"
)


def loop_hint(runner: AppRunner, exc: BaseException) -> str:
    """:data:`LOOP_HINT` when the app runs in trio and ``exc`` (or what caused it) says it needs asyncio, else ""."""
    if runner.bridged:
        return ""
    pending: list[BaseException] = [exc]
    seen: set[int] = set()
    while pending and len(seen) < 50:
        e = pending.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if any(isinstance(e, kind) and words in str(e) for kind, words in _NEEDS_ASYNCIO):
            return LOOP_HINT
        pending += [x for x in (e.__cause__, e.__context__) if x is not None]
        if isinstance(e, BaseExceptionGroup):
            pending += list(e.exceptions)
    return ""


class AppRunner:
    """Runs the app natively in trio."""

    name = "trio"
    #: True when the app runs in another event loop and each call goes through the bridge.
    bridged = False

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def drive(self) -> None:
        """Run whatever loop the app needs, for the life of the server (a task in its root nursery)."""

    async def call(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        first: Message | None = None,
        local_send: LocalSend | None = None,
        final: Callable[[Message], bool] | None = None,
    ) -> None:
        """Run the app for one scope. ``first`` / ``local_send`` / ``final`` only matter to bridged runners."""
        await self.app(scope, receive, send)

    def close(self) -> None:
        """Stop whatever the runner started."""


def _ignore() -> None:
    pass


async def _ignore_async(*args: object) -> Any:
    raise ClientDisconnected("the stream is finished")


class _OneTurnSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """The loop's selector: polls without blocking and ends the turn; trio does the waiting.

    asyncio passes ``select()`` the time it would sleep (0 when callbacks are
    ready, a timer's delay, or None); that figure is kept for the driver.
    """

    def __init__(self) -> None:
        super().__init__()
        self.wanted: float | None = 0.0
        self.end_turn: Callable[[], None] = _ignore

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        self.wanted = timeout
        self.end_turn()
        return super().select(0)  # type: ignore[no-any-return]


_call_soon = asyncio.SelectorEventLoop.call_soon  # on every scheduled callback: skip super()'s lookup
_call_at = asyncio.SelectorEventLoop.call_at


class HostedLoop(asyncio.SelectorEventLoop):
    """An asyncio loop turned by a trio task; new callbacks and timers call ``kick``."""

    def __init__(self) -> None:
        self.turns = _OneTurnSelector()
        super().__init__(self.turns)
        self.turns.end_turn = self.stop
        self.kick: Callable[[], None] = _ignore

    def call_soon(  # type: ignore[override]  # typeshed's TypeVarTuple form; same behaviour
        self, callback: Callable[..., object], *args: Any, context: Any = None
    ) -> asyncio.Handle:
        handle = _call_soon(self, callback, *args, context=context)
        self.kick()
        return handle

    def call_at(  # type: ignore[override]
        self, when: float, callback: Callable[..., object], *args: Any, context: Any = None
    ) -> asyncio.TimerHandle:
        handle = _call_at(self, when, callback, *args, context=context)
        self.kick()
        return handle

    def add_signal_handler(self, sig: int, callback: Callable[..., object], *args: Any) -> None:  # type: ignore[override]
        # asyncio would take over the signal wake-up fd that trio relies on for SIGTERM/SIGHUP.
        raise RuntimeError("h2gate handles the process's signals itself; an app cannot add asyncio signal handlers")


def _turn(loop: HostedLoop) -> None:
    """One turn of the loop, with sniffio saying asyncio while it runs."""
    # trio marks the whole thread as "trio" for sniffio; app code in this
    # turn must see asyncio (anyio, httpx and others ask).
    library, sniffio.thread_local.name = sniffio.thread_local.name, None
    try:
        loop.run_forever()  # one turn: the selector ends it
    except (SystemExit, KeyboardInterrupt) as exc:
        # asyncio lets these out of a task; that task's stream answers for it.
        log.debug("the asyncio loop's turn ended early: %r", exc)
    finally:
        sniffio.thread_local.name = library


class AsyncioRunner(AppRunner):
    """Runs the app in an asyncio loop hosted by the trio run (see the module docstring)."""

    name = "asyncio"
    bridged = True

    def __init__(self, app: ASGIApp) -> None:
        super().__init__(app)
        self.loop = HostedLoop()
        self._again = True  # the loop has (or may have) work for another turn
        self._wake: trio.Event | None = None  # set while drive() waits in trio
        self._turned = trio.Event()  # set after each turn: the selector's readiness was consumed

    def _kick(self) -> None:
        self._again = True
        wake = self._wake
        if wake is not None:
            self._wake = None
            wake.set()

    async def _watch_selector(self, fd: int) -> None:
        """Kick the driver when the loop's selector has events (app sockets, other threads' wake-ups).

        The parked driver is woken by an event rather than by cancelling its
        wait: in trio a cancelled wait costs several times more, and new
        callbacks kick the driver at every hop of a streamed response.
        """
        while True:
            await trio.lowlevel.wait_readable(fd)
            turned = self._turned
            self._kick()
            await turned.wait()  # until a turn reads the events, the fd stays readable

    async def drive(self) -> None:
        """Turn the loop whenever it has work; park until new callbacks, its selector or its next timer."""
        loop, turns = self.loop, self.loop.turns
        loop.kick = self._kick
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_selector, turns.fileno())
                while True:
                    if self._again or turns.wanted == 0:
                        await trio.lowlevel.checkpoint()
                    else:
                        wake = self._wake = trio.Event()
                        if turns.wanted is None:
                            await wake.wait()
                        else:
                            with trio.move_on_after(turns.wanted):
                                await wake.wait()
                        self._wake = None
                    self._again = False
                    _turn(loop)
                    turned, self._turned = self._turned, trio.Event()
                    turned.set()
        finally:
            self._wake = None
            loop.kick = _ignore

    async def call(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        first: Message | None = None,
        local_send: LocalSend | None = None,
        final: Callable[[Message], bool] | None = None,
    ) -> None:
        """Run the app as an asyncio task; this trio task does the I/O it asks for.

        ``first`` is a message the app's first ``receive()`` returns at once;
        ``local_send(message, on_room)`` may handle a message on the asyncio side
        (returning True) when that needs no I/O, or return None when it only
        has to wait for the writer to drain: the app waits until ``on_room`` is called and
        tries again, without a trip through trio. A message for which
        ``final(message)`` is true ends the response: the app's ``send()``
        returns at once and this task sends it, usually after the app has
        already returned. Other sends are made by this task too, in order,
        while the app waits on a future; each ``receive()`` that needs I/O
        runs as a trio task in a nursery opened for it, so an app may wait for
        a disconnect while it streams. A failure sending a final message is
        raised once the app is done.
        """
        bridge = Bridge(self, scope, receive, send, first, local_send, final, None)
        bridge.start()  # outside a turn: create_task only schedules the first step
        outcome = await bridge.serve()
        if outcome is not None:
            raise outcome

    def start(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        first: Message | None,
        local_send: LocalSend | None,
        final: Callable[[Message], bool] | None,
        owner: Owner,
    ) -> Bridge:
        """Start the app for one scope without a trio task; ``owner`` hears how it goes (see :class:`Owner`)."""
        bridge = Bridge(self, scope, receive, send, first, local_send, final, owner)
        bridge.start()
        return bridge

    def close(self) -> None:
        """After the trio run: cancel app tasks still pending (a lifespan that never returned), then close the loop."""
        loop = self.loop
        if loop.is_closed():
            return
        with contextlib.suppress(Exception):  # a task that refuses to die must not block exit
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.wait(pending, timeout=CLOSE_TIMEOUT))
            loop.run_until_complete(loop.shutdown_asyncgens())
        if not loop.is_running():
            loop.close()


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
        runner: AsyncioRunner,
        scope: Scope,
        receive: Receive,
        send: Send,
        first: Message | None,
        local_send: LocalSend | None,
        final: Callable[[Message], bool] | None,
        owner: Owner | None,
    ) -> None:
        self.app, self.loop, self.scope = runner.app, runner.loop, scope
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
        self.task = self.loop.create_task(_call_app(self))

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


def make_runner(app: ASGIApp, loop: str) -> AppRunner:
    return AsyncioRunner(app) if loop == "asyncio" else AppRunner(app)
