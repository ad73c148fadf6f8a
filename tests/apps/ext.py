"""ASGI apps for the HTTP/2 extensions: trailers, early hints, pathsend."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from .common import read_body, respond


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await read_body(receive)
    path = scope["path"]
    query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    if path == "/extensions":
        await respond(send, 200, json.dumps(sorted(scope["extensions"])).encode())
    elif path == "/push":
        if "http.response.push" in scope["extensions"]:
            await send({"type": "http.response.push", "path": "/pushed.css", "headers": [(b"accept", b"text/css")]})
        await respond(send, 200, b"<link rel=stylesheet href=/pushed.css>")
    elif path == "/pushed.css":
        headers = dict(scope["headers"])
        await respond(send, 200, b"body{} /* " + headers.get(b"accept", b"?") + b" */")
    elif path == "/push-bad":
        await send({"type": "http.response.push", "path": "no-slash"})
    elif path == "/trailers":
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
        await send({"type": "http.response.body", "body": b"abc", "more_body": True})
        await send({"type": "http.response.body", "body": b"def"})
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"123")], "more_trailers": True})
        await send({"type": "http.response.trailers", "headers": [(b"X-More", b"2")]})
    elif path == "/trailers-no-body":
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
        await send({"type": "http.response.body", "body": b""})
        await send({"type": "http.response.trailers", "headers": [(b"grpc-status", b"0")]})
    elif path == "/trailers-forgotten":
        # Announces trailers, then returns without sending them: the stream must not end cleanly.
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
        await send({"type": "http.response.body", "body": b"partial"})
    elif path == "/trailers-unannounced":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"x", "more_body": True})
        await send({"type": "http.response.trailers", "headers": [(b"x-a", b"1")]})
    elif path == "/hints":
        await send({"type": "http.response.early_hint", "links": [b"</style.css>; rel=preload; as=style"]})
        await send(
            {
                "type": "http.response.early_hint",
                "links": [b"</app.js>; rel=preload; as=script", b"</font.woff2>; rel=preload; as=font"],
            }
        )
        await respond(send, 200, b"hinted")
    elif path == "/pathsend":
        headers = [(b"content-type", b"application/octet-stream")]
        if "length" in query:
            headers.append((b"content-length", query["length"].encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.pathsend", "path": query["file"]})
    else:
        await respond(send, 404, b"")
