"""Where the ASGI app's coroutines run: in the server's trio loop, or in asyncio.

Most ASGI apps (Django, anything using asyncio libraries) need an asyncio event
loop; apps written for trio or anyio can run in the server's own loop, which
saves two thread hops per message. ``--loop asyncio`` (the default) starts one
asyncio loop in a thread; each app call is scheduled there, and every
``receive()``/``send()`` it makes is run as a trio task in the stream's nursery
with the result posted back to asyncio. The HTTP/2 side never leaves trio.
Two things keep the hops few: calls to the other thread are queued and share
one wake-up per batch (:class:`_Hops`), and the message that ends a response
travels with the news that the app returned, so a small request costs one hop
each way.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from h2gate.appload import ASGIApp, Message, Receive, Scope, Send
from h2gate.errors import ClientDisconnected


class AppRunner:
    """Runs the app natively in trio."""

    name = "trio"
    #: True when the app runs outside the trio thread and each call costs a round trip.
    bridged = False

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def call(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        first: Message | None = None,
        local_send: Callable[[Message], bool] | None = None,
        final: Callable[[Message], bool] | None = None,
    ) -> None:
        """Run the app for one scope. ``first`` / ``local_send`` / ``final`` only matter to bridged runners."""
        await self.app(scope, receive, send)

    def close(self) -> None:
        """Stop whatever the runner started."""


class _Hops:
    """Calls from one thread to the other, coalesced: one wake-up per batch, not per call.

    Every cross-thread wake-up is a syscall and usually a GIL hand-over; with
    many streams in flight, calls queued while the other side is still busy
    ride on the wake-up already scheduled. ``post`` appends, and schedules a
    drain only when none is pending; the drain clears the flag before it
    empties the queue, so a call appended meanwhile is never stranded.
    """

    __slots__ = ("_pending", "_queue", "_wake")

    def __init__(self, wake: Callable[[Callable[[], None]], object]) -> None:
        self._queue: deque[tuple[Callable[..., object], tuple[Any, ...]]] = deque()
        self._pending = False
        self._wake = wake

    def post(self, fn: Callable[..., object], *args: Any) -> None:
        self._queue.append((fn, args))
        if not self._pending:
            self._pending = True
            try:
                self._wake(self._drain)
            except BaseException:  # the other side is gone (trio.RunFinishedError)
                self._pending = False
                self._queue.clear()
                raise

    def _drain(self) -> None:
        self._pending = False
        queue = self._queue
        while queue:
            fn, args = queue.popleft()
            fn(*args)


class AsyncioRunner(AppRunner):
    """Runs the app in an asyncio loop on its own thread."""

    name = "asyncio"
    bridged = True

    def __init__(self, app: ASGIApp) -> None:
        super().__init__(app)
        self.loop = asyncio.new_event_loop()
        self._to_asyncio = _Hops(self.loop.call_soon_threadsafe)
        self._to_trio: _Hops | None = None  # made in the trio thread, on the first call
        self._token: trio.lowlevel.TrioToken | None = None
        self._thread = threading.Thread(target=self._run_loop, name="h2gate-asyncio", daemon=True)
        self._thread.start()

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    async def call(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        first: Message | None = None,
        local_send: Callable[[Message], bool] | None = None,
        final: Callable[[Message], bool] | None = None,
    ) -> None:
        """Run the app in asyncio.

        ``first`` is a message the app's first ``receive()`` returns without a
        round trip; ``local_send(message)`` may handle a message in the asyncio
        thread (returning True) when that needs no I/O. A message for which
        ``final(message)`` is true ends the response: the app's ``send()``
        returns at once and the message goes to trio with the news that the app
        returned (one thread hop for both, the common case), or on the asyncio
        loop's next turn if the app keeps running (background work after the
        response). A failure sending it is raised here once the app is done.
        """
        loop = self.loop
        token = trio.lowlevel.current_trio_token()
        if self._to_trio is None or self._token is not token:
            self._token, self._to_trio = token, _Hops(token.run_sync_soon)
        to_trio, to_asyncio = self._to_trio.post, self._to_asyncio.post
        open_for_calls = True
        outbox: list[Message] = []  # asyncio side: final messages not yet handed to trio
        finals: list[Message] = []  # trio side: final messages that came with the app's return
        errors: list[BaseException] = []  # trio side: failures of final messages sent early
        early: list[trio.Event] = []  # trio side: final messages being sent while the app runs

        def spawn(future: asyncio.Future[Any], fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> None:
            # Runs in the trio thread. Once the app call is over, late calls from
            # a still-running asyncio task get an error instead of a task.
            if open_for_calls:
                nursery.start_soon(_run_and_post, to_asyncio, future, fn, *args)
            else:
                to_asyncio(_resolve, future, None, ClientDisconnected("the stream is finished"))

        async def send_early(messages: list[Message], sent: trio.Event) -> None:
            try:
                for message in messages:
                    await send(message)
            except Exception as exc:
                errors.append(exc)
            finally:
                sent.set()

        def take_early(messages: list[Message]) -> None:  # trio thread
            if open_for_calls:
                sent = trio.Event()
                early.append(sent)
                nursery.start_soon(send_early, messages, sent)
            else:
                finals.extend(messages)

        def flush() -> None:  # asyncio thread
            if outbox:
                messages = outbox[:]
                outbox.clear()
                to_trio(take_early, messages)

        def bridge(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            async def in_asyncio(*args: Any) -> Any:
                flush()  # keep the order of messages
                future: asyncio.Future[Any] = loop.create_future()
                to_trio(spawn, future, fn, args)
                return await future

            return in_asyncio

        def finish(messages: list[Message]) -> None:  # trio thread
            finals.extend(messages)
            done.set()

        def app_returned(_task: object) -> None:  # asyncio thread
            messages = outbox[:]
            outbox.clear()
            try:
                to_trio(finish, messages)
            except trio.RunFinishedError:
                pass  # the server is gone; nobody waits for this call any more

        def start_app() -> None:  # asyncio thread
            task = loop.create_task(self.app(scope, app_receive, app_send))
            task.add_done_callback(app_returned)
            tasks.append(task)

        def cancel_app() -> None:  # asyncio thread
            for task in tasks:
                task.cancel()

        async with trio.open_nursery() as nursery:
            done = trio.Event()
            remote_receive, remote_send = bridge(receive), bridge(send)
            prefetched = [first] if first is not None else []

            async def app_receive() -> Message:
                if prefetched:
                    return prefetched.pop()
                return await remote_receive()  # type: ignore[no-any-return]

            async def app_send(message: Message) -> None:
                if local_send is not None and local_send(message):
                    return
                if final is not None and final(message):
                    outbox.append(message)
                    if len(outbox) == 1:
                        loop.call_soon(flush)
                    return
                await remote_send(message)

            tasks: list[asyncio.Task[None]] = []
            to_asyncio(start_app)
            try:
                await done.wait()
                for sent in early:
                    await sent.wait()
            except BaseException:
                to_asyncio(cancel_app)
                raise
            finally:
                open_for_calls = False
                nursery.cancel_scope.cancel()
        for message in finals:
            await send(message)
        if errors:
            raise errors[0]
        tasks[0].result()

    def close(self) -> None:
        """Cancel app tasks still pending (e.g. a lifespan that never returned), then stop the loop."""

        async def cancel_pending() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(cancel_pending(), self.loop).result(timeout=5)
        except Exception:  # a task that refuses to die must not block exit
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self.loop.close()


async def _run_and_post(
    to_asyncio: Callable[..., None],
    future: asyncio.Future[Message | None],
    fn: Callable[..., Awaitable[Any]],
    *args: Any,
) -> None:
    try:
        result = await fn(*args)
    except trio.Cancelled:
        to_asyncio(_resolve, future, None, ConnectionError("the stream was cancelled"))
        raise
    except BaseException as exc:  # handed to the app, which owns the error
        to_asyncio(_resolve, future, None, exc)
    else:
        to_asyncio(_resolve, future, result, None)


def _resolve(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


def make_runner(app: ASGIApp, loop: str) -> AppRunner:
    return AsyncioRunner(app) if loop == "asyncio" else AppRunner(app)
