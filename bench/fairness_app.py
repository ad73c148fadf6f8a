"""The app bench/fairness.py serves: ``/`` answers 13 bytes, ``/big?mb=N`` streams N MB in 64 KiB chunks."""

from __future__ import annotations

from typing import Any

from bench.app import CHUNK_SIZE
from bench.app import app as small_app

_CHUNK = b"x" * CHUNK_SIZE
MAX_MB = 1000


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http" or scope["path"] != "/big":
        await small_app(scope, receive, send)
        return
    query = dict(part.partition("=")[::2] for part in scope["query_string"].decode().split("&"))
    size = min(MAX_MB, int(query.get("mb", "100") or 100)) * 1_000_000
    headers = [(b"content-type", b"application/octet-stream"), (b"content-length", str(size).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    sent = 0
    while sent < size:
        piece = _CHUNK if size - sent >= CHUNK_SIZE else _CHUNK[: size - sent]
        sent += len(piece)
        await send({"type": "http.response.body", "body": piece, "more_body": sent < size})
