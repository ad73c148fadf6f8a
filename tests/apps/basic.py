"""Small ASGI apps used by the acceptance tests (no framework)."""

from __future__ import annotations

import json
from typing import Any


async def read_body(receive: Any) -> bytes:
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionError("client went away")
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return bytes(body)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """/echo echoes the body; /scope returns the scope as JSON; anything else says hello."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["greeting"] = "hi"
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = await read_body(receive)
    if scope["path"] == "/echo":
        payload = body
    elif scope["path"] == "/scope":
        view = {k: v for k, v in scope.items() if k not in ("state", "extensions")}
        view["headers"] = [[k.decode(), v.decode()] for k, v in scope["headers"]]
        view["raw_path"] = scope["raw_path"].decode()
        view["query_string"] = scope["query_string"].decode()
        view["state"] = dict(scope["state"])
        payload = json.dumps(view).encode()
    else:
        payload = b"hello"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": payload})
