"""WebSocket test apps: a raw ASGI one (``app``) and a Starlette one (``star``).

``app`` routes by path:

* ``/echo`` accepts (choosing the first offered subprotocol), echoes text and
  bytes; the text ``close:CODE:REASON`` makes it close with that code; the text
  ``big:N`` makes it send N bytes in one message. Each disconnect's code and
  reason is remembered and ``GET /last`` (plain HTTP/2) returns the latest.
* ``/scope`` accepts and sends the scope as JSON text.
* ``/headers`` accepts with an extra response header.
* ``/deny`` answers with a 403 HTTP response (``websocket.http.response``).
* ``/reject`` sends ``websocket.close`` before accepting (an HTTP 403).
* ``/stall`` accepts, reads nothing for 3 s, then echoes (asyncio loop only).
* ``/boom`` accepts, then raises (close 1011); ``/boom-early`` raises before accepting (500).
* ``/page`` (HTTP) is an HTML page that opens a WebSocket to ``/echo`` on its own origin
  (``/page?ws=PORT``: on that port of the same host, another origin) and
  resolves ``window.result`` with what came back and the page's own protocol.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from .common import read_body, respond, serve_lifespan

LAST: dict[str, Any] = {}

PAGE = b"""<!doctype html><html><head><title>ws</title></head><body><script>
window.result = new Promise((resolve) => {
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const port = new URLSearchParams(location.search).get("ws") || location.port;
  const ws = new WebSocket(scheme + location.hostname + ":" + port + "/echo");
  const got = [];
  ws.onopen = () => { ws.send("hello"); };
  ws.onmessage = (e) => { got.push(e.data); ws.close(1000, "bye"); };
  ws.onclose = (e) => resolve({got, code: e.code,
    protocol: performance.getEntriesByType("navigation")[0].nextHopProtocol});
  ws.onerror = () => got.push("error");
});
</script></body></html>
"""


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await serve_lifespan(receive, send)
        return
    if scope["type"] == "http":
        await read_body(receive)
        if scope["path"] == "/page":
            await respond(send, 200, PAGE, [(b"content-type", b"text/html; charset=utf-8")])
        else:
            await respond(send, 200, json.dumps(LAST).encode(), [(b"content-type", b"application/json")])
        return
    assert scope["type"] == "websocket"
    message = await receive()
    assert message["type"] == "websocket.connect"
    path = scope["path"]
    if path == "/deny":
        await send({"type": "websocket.http.response.start", "status": 403, "headers": [(b"x-denied", b"yes")]})
        await send({"type": "websocket.http.response.body", "body": b"not ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"allowed"})
        return
    if path == "/reject":
        await send({"type": "websocket.close", "code": 1000})
        return
    if path == "/boom-early":
        raise RuntimeError("boom before accept")
    headers = [(b"x-ws", b"yes")] if path == "/headers" else []
    protocols = scope["subprotocols"]
    await send({"type": "websocket.accept", "subprotocol": protocols[0] if protocols else None, "headers": headers})
    if path == "/scope":
        view = {k: v for k, v in scope.items() if k not in ("state", "extensions", "headers", "raw_path")}
        view["query_string"] = scope["query_string"].decode()
        view["headers"] = [[k.decode(), v.decode()] for k, v in scope["headers"]]
        view["extensions"] = sorted(scope["extensions"])
        await send({"type": "websocket.send", "text": json.dumps(view)})
    if path == "/boom":
        raise RuntimeError("boom after accept")
    if path == "/stall":
        await asyncio.sleep(3)  # receives nothing for a while (asyncio loop only)
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            LAST.update(code=message["code"], reason=message.get("reason", ""), path=path)
            return
        text = message.get("text")
        if text is not None and text.startswith("close:"):
            _, code, reason = text.split(":", 2)
            await send({"type": "websocket.close", "code": int(code), "reason": reason})
            continue
        if text is not None and text.startswith("big:"):
            await send({"type": "websocket.send", "bytes": b"x" * int(text[4:])})
            continue
        if text is not None:
            await send({"type": "websocket.send", "text": text})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


def _star() -> Any:
    import sniffio
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept(subprotocol="chat" if "chat" in websocket.scope["subprotocols"] else None)
        await websocket.send_text(f"loop={sniffio.current_async_library()}")
        try:
            while True:
                data = await websocket.receive_text()
                await websocket.send_text(data.upper())
        except WebSocketDisconnect:
            pass

    async def json_route(websocket: WebSocket) -> None:
        await websocket.accept()
        payload = await websocket.receive_json()
        await websocket.send_json({"got": payload})
        await websocket.close(code=4000, reason="done")

    return Starlette(routes=[WebSocketRoute("/ws", echo), WebSocketRoute("/json", json_route)])


star = _star()
