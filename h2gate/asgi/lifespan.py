"""The ASGI lifespan protocol: startup before the first connection, shutdown after the last.

The app's lifespan coroutine runs as one task for the whole life of the server.
Under ``--lifespan auto`` an app that raises or returns before answering
``lifespan.startup`` is taken not to support lifespan and is served anyway.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from h2gate.asgi.http import ASGI_VERSION
from h2gate.asgi.runner import AppRunner, loop_hint
from h2gate.asgi.types import Message
from h2gate.compiled import mypyc_attr
from h2gate.errors import StartupError

log = logging.getLogger("h2gate.error")


def _one_line(text: object) -> str:
    """The app's failure message as one line: it ends up in a one-line startup error or log line."""
    return " ".join(str(text).split()) or "(no message)"


@mypyc_attr(native_class=False)  # (a subclass of an uncompiled class: h2gate/compiled.py)
class LifespanFailure(StartupError):
    """The app reported lifespan.startup.failed (or broke the lifespan protocol under --lifespan on)."""


class Lifespan:
    def __init__(self, runner: AppRunner, mode: str) -> None:
        self.runner = runner
        self.mode = mode
        self.state: dict[str, Any] = {}
        self.supported = mode != "off"
        self._to_app_send, self._to_app = trio.open_memory_channel[Message](2)
        self._startup_done = trio.Event()
        self._shutdown_done = trio.Event()
        self._app_exited = trio.Event()
        self._failure: str | None = None
        self._answered_startup = False

    async def startup(self, nursery: trio.Nursery) -> None:
        """Run lifespan.startup; raises LifespanFailure if the app reports failure."""
        if self.mode == "off":
            return
        nursery.start_soon(self._main)
        await self._to_app_send.send({"type": "lifespan.startup"})
        await self._wait(self._startup_done)
        if self._failure is not None:
            raise LifespanFailure(f"application startup failed: {self._failure}")
        if not self._answered_startup:
            self.supported = False

    async def shutdown(self, timeout: float) -> None:
        if not self.supported or self._app_exited.is_set():
            return
        await self._to_app_send.send({"type": "lifespan.shutdown"})
        with trio.move_on_after(timeout) as scope:
            await self._wait(self._shutdown_done)
        if scope.cancelled_caught:
            log.warning("lifespan shutdown did not finish within %.1fs", timeout)
        elif self._failure is not None:
            log.error("application shutdown failed: %s", self._failure)

    async def _wait(self, event: trio.Event) -> None:
        async with trio.open_nursery() as nursery:

            async def cancel_when(ev: trio.Event) -> None:
                await ev.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(cancel_when, event)
            nursery.start_soon(cancel_when, self._app_exited)

    async def _main(self) -> None:
        scope = {"type": "lifespan", "asgi": ASGI_VERSION, "state": self.state}
        try:
            await self.runner.call(scope, self._receive, self._send)
        except Exception as exc:
            hint = loop_hint(self.runner, exc)
            if self._answered_startup:
                log.exception("exception in the app's lifespan handler%s", hint)
            elif self.mode == "auto" and hint:
                log.error("the app's lifespan startup failed (%s: %s)%s", type(exc).__name__, exc, hint)
            elif self.mode == "auto":
                log.info("the app does not support ASGI lifespan (%s: %s); serving without it", type(exc).__name__, exc)
            else:
                log.exception("exception in the app's lifespan startup%s", hint)
                self._failure = self._failure or _one_line(f"{type(exc).__name__}: {exc}")
        else:
            if not self._answered_startup:
                if self.mode == "auto":
                    log.info("the app returned from ASGI lifespan without answering; serving without it")
                else:
                    self._failure = self._failure or "the app returned without answering lifespan.startup"
        finally:
            self._app_exited.set()

    async def _receive(self) -> Message:
        return await self._to_app.receive()

    async def _send(self, message: Message) -> None:
        kind = message.get("type")
        if kind == "lifespan.startup.complete":
            self._answered_startup = True
            self._startup_done.set()
        elif kind == "lifespan.startup.failed":
            self._answered_startup = True
            self._failure = _one_line(message.get("message", ""))
            self._startup_done.set()
        elif kind == "lifespan.shutdown.complete":
            self._shutdown_done.set()
        elif kind == "lifespan.shutdown.failed":
            self._failure = _one_line(message.get("message", ""))
            self._shutdown_done.set()
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} in lifespan")
