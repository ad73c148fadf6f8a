"""Apps for the logging, metrics and proxy tests: what the server told the app, and a few status codes."""

from __future__ import annotations

import json
from typing import Any

from .common import read_body, respond


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """/client: the scope's client, scheme, server and host as JSON; /missing: 404;
    /hang: never answers (for resets); /big?n=N: N bytes; anything else: "ok"."""
    if scope["type"] != "http":
        return
    path = scope["path"]
    await read_body(receive)
    if path == "/hang":
        await receive()  # returns http.disconnect once the client resets the stream
        return
    if path == "/client":
        host = dict(scope["headers"]).get(b"host", b"").decode()
        payload = {"client": scope["client"], "scheme": scope["scheme"], "server": scope["server"], "host": host}
        await respond(send, 200, json.dumps(payload).encode(), [(b"content-type", b"application/json")])
    elif path == "/missing":
        await respond(send, 404, b"no such thing", [(b"x-reason", b"missing")])
    elif path == "/big":
        size = int(scope["query_string"].decode().partition("=")[2] or "0")
        await respond(send, 200, b"x" * size)
    else:
        await respond(send, 200, b"ok", [(b"x-reason", b"fine")])


def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """/environ: the CGI-ish part of the environ as JSON."""
    view = {k: v for k, v in environ.items() if isinstance(v, str)}
    body = json.dumps(view).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
