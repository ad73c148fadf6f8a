"""Helpers the hand-written ASGI test apps share: whole-body reads, two-message responses, lifespan.

The server imports the apps as ``apps.<name>`` (tests/ is its working
directory) and the tests as ``tests.apps.<name>``, so apps import this module
relatively: ``from .common import read_body``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


async def read_body(receive: Any) -> bytes:
    """The whole request body; ConnectionError if the client goes away first."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionError("client went away")
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return bytes(body)


async def respond(send: Any, status: int, body: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """A whole response: http.response.start, then one http.response.body."""
    await send({"type": "http.response.start", "status": status, "headers": headers or []})
    await send({"type": "http.response.body", "body": body})


async def serve_lifespan(
    receive: Any,
    send: Any,
    *,
    startup: Callable[[], object] | None = None,
    shutdown: Callable[[], object] | None = None,
) -> None:
    """Run a lifespan scope to its end: call ``startup()`` / ``shutdown()`` (if given) and report each complete."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            if startup is not None:
                startup()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if shutdown is not None:
                shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return
