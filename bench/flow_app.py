"""The ASGI app bench/flow.py's servers serve: bulk uploads and downloads, and the readiness answer.

* ``/``                 -> 200 ``Hello, world!`` (what bench.servers.wait_ready asks for)
* ``/upload``           -> reads the whole request body, answers its length in bytes
* ``/download?size=N``  -> N bytes, 64 KiB per ``http.response.body`` message
"""

from __future__ import annotations

from typing import Any

HELLO = b"Hello, world!"
CHUNK = b"x" * (64 * 1024)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/upload":
        total = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            total += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = str(total).encode()
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(body)).encode())]}
        )
        await send({"type": "http.response.body", "body": body})
    elif path == "/download":
        size = int(scope["query_string"].decode().partition("size=")[2] or 0)
        headers = [(b"content-type", b"application/octet-stream"), (b"content-length", str(size).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        while size > len(CHUNK):
            await send({"type": "http.response.body", "body": CHUNK, "more_body": True})
            size -= len(CHUNK)
        await send({"type": "http.response.body", "body": CHUNK[:size]})
    else:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"13")]})
        await send({"type": "http.response.body", "body": HELLO})
