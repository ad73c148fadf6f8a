"""An asyncio app that leans on the loop h2gate hosts for it (``--loop asyncio``).

Each route exercises one way asyncio code waits: timers, executor threads,
``call_soon_threadsafe`` from a foreign thread, asyncio sockets, anyio, and a
background task that outlives its request.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from typing import Any
from urllib.parse import parse_qs

import anyio
import sniffio

_background: dict[str, str] = {}


async def _respond(send: Any, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


async def _after(key: str) -> None:
    await asyncio.sleep(0.1)
    _background[key] = "done"


async def _route(path: str, query: dict[str, list[str]]) -> bytes:
    loop = asyncio.get_running_loop()
    if path == "/library":
        await anyio.sleep(0)  # anyio picks its asyncio backend through sniffio
        return f"{sniffio.current_async_library()} {anyio.get_current_task().name is not None}".encode()
    if path == "/sleep":
        await asyncio.sleep(0.05)
        return b"slept"
    if path == "/wait-for":
        try:
            await asyncio.wait_for(asyncio.sleep(30), 0.05)
        except TimeoutError:
            return b"timed out"
        return b"not timed out"
    if path == "/executor":
        return str(await loop.run_in_executor(None, sum, range(10))).encode()
    if path == "/threadsafe":
        future: asyncio.Future[str] = loop.create_future()

        def later() -> None:
            threading.Event().wait(0.05)
            loop.call_soon_threadsafe(future.set_result, "woken from a thread")

        threading.Thread(target=later, daemon=True).start()
        return (await future).encode()
    if path == "/socket":
        reader, writer = await asyncio.open_connection("127.0.0.1", int(query["port"][0]))
        writer.write(b"ping\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 10)
        writer.close()
        await writer.wait_closed()
        return line.strip()
    if path == "/signal":
        try:
            loop.add_signal_handler(signal.SIGUSR1, lambda: None)
        except RuntimeError as exc:
            return str(exc).encode()
        return b"installed"
    if path == "/background":
        asyncio.get_running_loop().create_task(_after(query["key"][0]))
        return b"started"
    if path == "/background-state":
        return _background.get(query["key"][0], "pending").encode()
    raise LookupError(path)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    try:
        body = await _route(scope["path"], parse_qs(scope["query_string"].decode()))
    except LookupError:
        await _respond(send, 404, b"no such route")
        return
    await _respond(send, 200, body)


class SyncEntry:
    """An app whose ``__call__`` is a plain method that already needs the running loop."""

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        asyncio.get_running_loop()  # raises RuntimeError outside a turn of the loop
        return app(scope, receive, send)


sync_entry = SyncEntry()
