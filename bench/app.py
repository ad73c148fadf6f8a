"""The one ASGI app every server in the benchmark serves.

Kept framework-free and allocation-light so the numbers are about the server,
not the app:

* ``/``         -> 200, the 13 bytes ``Hello, world!``
* ``/download`` -> 200, 5 MiB sent as 80 chunks of 64 KiB with ``more_body``
* anything else -> 404

Lifespan is answered (startup/shutdown complete) so no server logs a warning.
"""

from __future__ import annotations

from typing import Any

HELLO = b"Hello, world!"
CHUNK_SIZE = 64 * 1024
DOWNLOAD_CHUNKS = 80  # 80 * 64 KiB = 5 MiB
DOWNLOAD_SIZE = CHUNK_SIZE * DOWNLOAD_CHUNKS
_CHUNK = b"x" * CHUNK_SIZE

_HELLO_HEADERS = [
    (b"content-type", b"text/plain"),
    (b"content-length", str(len(HELLO)).encode()),
]
_DOWNLOAD_HEADERS = [
    (b"content-type", b"application/octet-stream"),
    (b"content-length", str(DOWNLOAD_SIZE).encode()),
]
_NOT_FOUND_HEADERS = [(b"content-type", b"text/plain"), (b"content-length", b"9")]


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    kind = scope["type"]
    if kind == "lifespan":
        await _lifespan(receive, send)
        return
    if kind != "http":
        return
    # GET requests carry no body; the request message is not awaited so the
    # hot path is one response.start + one (or 80) response.body messages.
    path = scope["path"]
    if path == "/":
        await send({"type": "http.response.start", "status": 200, "headers": _HELLO_HEADERS})
        await send({"type": "http.response.body", "body": HELLO})
    elif path == "/download":
        await send({"type": "http.response.start", "status": 200, "headers": _DOWNLOAD_HEADERS})
        for _ in range(DOWNLOAD_CHUNKS - 1):
            await send({"type": "http.response.body", "body": _CHUNK, "more_body": True})
        await send({"type": "http.response.body", "body": _CHUNK})
    else:
        await send({"type": "http.response.start", "status": 404, "headers": _NOT_FOUND_HEADERS})
        await send({"type": "http.response.body", "body": b"not found"})
