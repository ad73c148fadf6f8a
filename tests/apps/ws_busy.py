"""A WebSocket app that is busy (not in receive()) for a while: for pings, closes and backpressure.

``/nap?secs=N`` accepts, sleeps N seconds without calling receive() (``anyio.sleep``,
so it runs on both ``--loop asyncio`` and ``--loop trio``), then echoes text and bytes
until the client goes; the disconnect's code and the messages received are kept, and
``GET /last`` (HTTP) returns them.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

import anyio

from .common import read_body, respond

LAST: dict[str, Any] = {}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await read_body(receive)
        await respond(send, 200, json.dumps(LAST).encode(), [(b"content-type", b"application/json")])
        return
    if scope["type"] != "websocket":
        return
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    query = parse_qs(scope["query_string"].decode())
    await anyio.sleep(float(query.get("secs", ["1"])[0]))
    got: list[str] = []
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            LAST.clear()
            LAST.update(code=message["code"], got=got)
            return
        got.append(message.get("text") or message["bytes"].decode("latin-1"))
        try:
            if message.get("text") is not None:
                await send({"type": "websocket.send", "text": message["text"]})
            else:
                await send({"type": "websocket.send", "bytes": message["bytes"]})
        except OSError:
            pass  # the client closed already: its disconnect is the next receive()
