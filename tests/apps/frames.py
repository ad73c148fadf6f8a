"""ASGI handlers for the frame-level extension (``--enable-frame-api``), in the spirit of WPT's H2 handlers."""

from __future__ import annotations

import json
from typing import Any

from .common import respond

Message = dict[str, Any]


async def _until_request_end(receive: Any) -> list[Message]:
    """Every message up to the final ``http.request`` (or a disconnect), in the order receive() gave them."""
    seen: list[Message] = []
    for _ in range(10_000):
        message = await receive()
        seen.append(message)
        if message["type"] == "http.disconnect":
            break
        if message["type"] == "http.request" and not message.get("more_body", False):
            break
    return seen


def _describe(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"type": message["type"]}
    if message["type"] == "h2gate.frames.headers":
        out["headers"] = [[n.decode(), v.decode()] for n, v in message["headers"]]
        out["end_stream"] = message["end_stream"]
    elif message["type"] == "h2gate.frames.data":
        out.update(data=message["data"].decode(), end_stream=message["end_stream"], flags=message["flags"])
    elif message["type"] == "http.request":
        out.update(body=message["body"].decode(), more_body=message["more_body"])
    return out


async def reverse(receive: Any, send: Any) -> None:
    """Send each request DATA frame back reversed, each as its own DATA frame; end with a last frame."""
    await send({"type": "h2gate.frames.send_headers", "headers": [(b":status", b"200")]})
    for _ in range(10_000):
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        if message["type"] != "h2gate.frames.data":
            continue
        if message["data"]:
            await send({"type": "h2gate.frames.send_data", "data": message["data"][::-1]})
        if message["end_stream"]:
            await send({"type": "h2gate.frames.send_data", "data": b"last", "end_stream": True})
            return


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/reverse":
        await reverse(receive, send)
        return
    seen = await _until_request_end(receive)
    if path == "/extensions":
        await respond(send, 200, json.dumps(sorted(scope["extensions"])).encode())
    elif path == "/seen":
        await respond(send, 200, json.dumps([_describe(m) for m in seen]).encode())
    elif path == "/continuation":
        # One response header section split over HEADERS + two CONTINUATION frames.
        await send(
            {
                "type": "h2gate.frames.send_headers",
                "headers": [(b":status", b"200"), (b"x-one", b"1")],
                "end_headers": False,
            }
        )
        await send({"type": "h2gate.frames.send_continuation", "headers": [(b"x-two", b"2")], "end_headers": False})
        await send({"type": "h2gate.frames.send_continuation", "headers": [(b"x-three", b"3" * 100)]})
        await send({"type": "h2gate.frames.send_data", "data": b"continued", "end_stream": True})
    elif path == "/no-status":
        # A response HEADERS without :status: a malformed response every client must refuse.
        await send({"type": "h2gate.frames.send_headers", "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "h2gate.frames.end_stream"})
    elif path == "/bad-hpack":
        # A header block that is not valid HPACK (index 0 does not exist): a connection error for the client.
        await send({"type": "h2gate.frames.send_headers", "block": b"\x80", "end_stream": True})
    elif path == "/push":
        promised = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"localhost"), (b":path", b"/p")]
        await send({"type": "h2gate.frames.push_promise", "promised_stream_id": 2, "headers": promised})
        await send({"type": "h2gate.frames.send_headers", "stream_id": 2, "headers": [(b":status", b"200")]})
        await send({"type": "h2gate.frames.send_data", "stream_id": 2, "data": b"pushed", "end_stream": True})
        await send({"type": "h2gate.frames.send_headers", "headers": [(b":status", b"200")]})
        await send({"type": "h2gate.frames.end_stream"})
    elif path == "/half":
        # Raw HEADERS, then the app returns without ending the stream.
        await send({"type": "h2gate.frames.send_headers", "headers": [(b":status", b"200")]})
    elif path == "/bad-message":
        await send({"type": "h2gate.frames.send_data", "data": "not bytes"})
    else:
        await respond(send, 200, b"plain")
