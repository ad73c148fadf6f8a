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
from collections.abc import Callable

import sniffio
import trio

from h2gate.asgi.bridge import Bridge, LocalSend, Owner
from h2gate.asgi.hosted_loop import HostedLoop, ignore
from h2gate.asgi.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("h2gate.error")

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
            loop.kick = ignore

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
        bridge = Bridge(self.app, self.loop, scope, receive, send, first, local_send, final, None)
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
        bridge = Bridge(self.app, self.loop, scope, receive, send, first, local_send, final, owner)
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


def make_runner(app: ASGIApp, loop: str) -> AppRunner:
    return AsyncioRunner(app) if loop == "asyncio" else AppRunner(app)
