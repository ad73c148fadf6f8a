"""Where the ASGI app's coroutines run: in the server's trio loop, or in asyncio.

Most ASGI apps (Django, anything using asyncio libraries) need an asyncio event
loop; apps written for trio or anyio can run in the server's own loop, which
saves two thread hops per message. ``--loop asyncio`` (the default) starts one
asyncio loop in a thread; each app call is scheduled there, and every
``receive()``/``send()`` it makes is run as a trio task in the stream's nursery
with the result posted back to asyncio. The HTTP/2 side never leaves trio.
"""

from __future__ import annotations

import asyncio
import threading
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
    ) -> None:
        """Run the app for one scope. ``first`` / ``local_send`` only matter to bridged runners."""
        await self.app(scope, receive, send)

    def close(self) -> None:
        """Stop whatever the runner started."""


class AsyncioRunner(AppRunner):
    """Runs the app in an asyncio loop on its own thread."""

    name = "asyncio"
    bridged = True

    def __init__(self, app: ASGIApp) -> None:
        super().__init__(app)
        self.loop = asyncio.new_event_loop()
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
    ) -> None:
        """Run the app in asyncio.

        ``first`` is a message the app's first ``receive()`` returns without a
        round trip; ``local_send(message)`` may handle a message in the asyncio
        thread (returning True) when that needs no I/O.
        """
        token = trio.lowlevel.current_trio_token()
        loop = self.loop
        open_for_calls = True

        def spawn(future: asyncio.Future[Any], fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> None:
            # Runs in the trio thread. Once the app call is over, late calls from
            # a still-running asyncio task get an error instead of a task.
            if open_for_calls:
                nursery.start_soon(_run_and_post, loop, future, fn, *args)
            else:
                loop.call_soon_threadsafe(_resolve, future, None, ClientDisconnected("the stream is finished"))

        def bridge(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            async def in_asyncio(*args: Any) -> Any:
                future: asyncio.Future[Any] = loop.create_future()
                token.run_sync_soon(spawn, future, fn, args)
                return await future

            return in_asyncio

        async with trio.open_nursery() as nursery:
            done = trio.Event()
            remote_receive, remote_send = bridge(receive), bridge(send)
            prefetched = [first] if first is not None else []

            async def app_receive() -> Message:
                if prefetched:
                    return prefetched.pop()
                return await remote_receive()  # type: ignore[no-any-return]

            async def app_send(message: Message) -> None:
                if local_send is None or not local_send(message):
                    await remote_send(message)

            cfuture = asyncio.run_coroutine_threadsafe(self.app(scope, app_receive, app_send), loop)
            cfuture.add_done_callback(lambda _f: _wake_trio(token, done))
            try:
                await done.wait()
            except BaseException:
                cfuture.cancel()
                raise
            finally:
                open_for_calls = False
                nursery.cancel_scope.cancel()
        cfuture.result()

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
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[Message | None],
    fn: Callable[..., Awaitable[Any]],
    *args: Any,
) -> None:
    try:
        result = await fn(*args)
    except trio.Cancelled:
        loop.call_soon_threadsafe(_resolve, future, None, ConnectionError("the stream was cancelled"))
        raise
    except BaseException as exc:  # handed to the app, which owns the error
        loop.call_soon_threadsafe(_resolve, future, None, exc)
    else:
        loop.call_soon_threadsafe(_resolve, future, result, None)


def _wake_trio(token: trio.lowlevel.TrioToken, event: trio.Event) -> None:
    try:
        token.run_sync_soon(event.set)
    except trio.RunFinishedError:
        pass  # the server is gone; nobody waits for this call any more


def _resolve(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


def make_runner(app: ASGIApp, loop: str) -> AppRunner:
    return AsyncioRunner(app) if loop == "asyncio" else AppRunner(app)
