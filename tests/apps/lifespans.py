"""ASGI apps for the lifespan tests: one per way an app can treat the lifespan scope.

Apps print ``lifespans: ...`` lines (captured with the server's log) so tests can
see what ran, and ``stateful`` writes "startup"/"shutdown" to the file named by
``$LIFESPAN_MARKER`` when that is set.
"""

from __future__ import annotations

import json
import os
from typing import Any

import sniffio

from .common import serve_lifespan


async def _respond(send: Any, payload: Any, status: int = 200) -> None:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Any) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return body


def _mark(text: str) -> None:
    print(f"lifespans: {text}", flush=True)
    marker = os.environ.get("LIFESPAN_MARKER")
    if marker:
        with open(marker, "a") as fh:
            fh.write(text + "\n")


async def stateful(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Puts values in ``state`` at startup; each request reports its state and then scribbles on it."""
    if scope["type"] == "lifespan":

        def startup() -> None:
            scope["state"]["db"] = "connected"
            scope["state"]["loop"] = sniffio.current_async_library()
            _mark("startup")

        await serve_lifespan(receive, send, startup=startup, shutdown=lambda: _mark("shutdown"))
        return
    await _read_body(receive)
    state = scope["state"]
    seen = dict(state)
    state["leak"] = "this request's own"  # must not reach the next request
    state.pop("db", None)
    await _respond(send, {"state": seen, "loop": sniffio.current_async_library()})


async def startup_fails(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "database unreachable\n  at db:5432"})
        await receive()  # a server that carried on would send lifespan.shutdown
        return
    await _respond(send, b"should never be served")


async def raises(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Knows nothing of lifespan: fails on any scope it does not handle."""
    if scope["type"] != "http":
        raise RuntimeError(f"unsupported scope type {scope['type']!r}")
    await _read_body(receive)
    await _respond(send, {"served": "raises", "state": dict(scope["state"])})


async def returns(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Ignores lifespan by returning straight away."""
    if scope["type"] == "lifespan":
        return
    await _read_body(receive)
    await _respond(send, {"served": "returns"})


SEEN: list[str] = []


async def recorder(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers with the scope types it has seen so far (a well-behaved lifespan app otherwise)."""
    SEEN.append(scope["type"])
    if scope["type"] == "lifespan":
        await serve_lifespan(receive, send)
        return
    await _read_body(receive)
    await _respond(send, {"seen": SEEN})


class ASGI2App:
    """The ASGI 2 double-callable style: ``App(scope)`` then ``await instance(receive, send)``."""

    def __init__(self, scope: dict[str, Any]) -> None:
        self.scope = scope

    async def __call__(self, receive: Any, send: Any) -> None:
        if self.scope["type"] == "lifespan":
            await serve_lifespan(receive, send, startup=lambda: self.scope["state"].update(style="asgi2"))
            return
        body = await _read_body(receive)
        await _respond(send, {"style": self.scope["state"].get("style"), "path": self.scope["path"], "body": len(body)})


def create_app() -> Any:
    """An app factory for ``--factory``."""
    created = {"by": "factory"}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await stateful(scope, receive, send)
            return
        await _read_body(receive)
        await _respond(send, {**created, "state": dict(scope["state"])})

    return app
