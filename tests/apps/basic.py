"""Small ASGI apps used by the acceptance tests (no framework)."""

from __future__ import annotations

import json
from typing import Any

from .common import read_body, respond, serve_lifespan


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """/echo echoes the body; /scope returns the scope as JSON; anything else says hello."""
    if scope["type"] == "lifespan":
        await serve_lifespan(receive, send, startup=lambda: scope["state"].update(greeting="hi"))
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
    await respond(send, 200, payload, [(b"content-type", b"text/plain")])
