"""A gRPC server written by hand as a bare ASGI app: the low-level cases of the gRPC tests.

No framework in between, so the tests see exactly what h2gate hands the app
(``receive()`` messages as DATA arrives, the request headers) and what it puts
on the wire for ``send()`` (trailers-only responses, trailer HEADERS). Methods
take and return raw bytes (grpcio's generic calls with no serializer):

* ``/raw.Raw/Echo``: every request message is answered at once, as soon as
  its last byte has arrived, while more requests may still come (full duplex).
* ``/raw.Raw/Headers``: one message back: the request's headers as text.
* ``/raw.Raw/Ignore``: never reads or writes until cancelled; notes how it ended.
* ``/raw.Raw/Seen``: what was noted under the key sent as the message.
* anything else: a trailers-only ``UNIMPLEMENTED``.
"""

from __future__ import annotations

import struct
from typing import Any

import anyio

_seen: dict[bytes, bytes] = {}


def frame(payload: bytes) -> bytes:
    return struct.pack(">BI", 0, len(payload)) + payload


def unframe(buf: bytearray) -> bytes | None:
    """The next whole message taken out of ``buf``, or None if it is not all there yet."""
    if len(buf) < 5:
        return None
    size = struct.unpack(">I", buf[1:5])[0]
    if len(buf) < 5 + size:
        return None
    message = bytes(buf[5 : 5 + size])
    del buf[: 5 + size]
    return message


async def _start(send: Any, extra: list[tuple[bytes, bytes]] | None = None, trailers: bool = True) -> None:
    headers = [(b"content-type", b"application/grpc"), *(extra or [])]
    await send({"type": "http.response.start", "status": 200, "headers": headers, "trailers": trailers})


async def _finish(send: Any, status: int = 0, message: bytes = b"") -> None:
    await send({"type": "http.response.body", "body": b"", "more_body": False})
    fields = [(b"grpc-status", str(status).encode())] + ([(b"grpc-message", message)] if message else [])
    await send({"type": "http.response.trailers", "headers": fields, "more_trailers": False})


async def _read_all(receive: Any) -> bytes:
    body = bytearray()
    while True:
        event = await receive()
        if event["type"] == "http.disconnect":
            raise OSError("client went away")
        body += event.get("body", b"")
        if not event.get("more_body", False):
            return bytes(body)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    path = scope["path"]
    if path == "/raw.Raw/Echo":
        await _start(send)
        buf = bytearray()
        while True:
            event = await receive()
            if event["type"] == "http.disconnect":
                return
            buf += event.get("body", b"")
            while (message := unframe(buf)) is not None:
                await send({"type": "http.response.body", "body": frame(message), "more_body": True})
            if not event.get("more_body", False):
                break
        await _finish(send)
    elif path == "/raw.Raw/Headers":
        await _read_all(receive)
        await _start(send)
        text = "\n".join(f"{n.decode()}: {v.decode()}" for n, v in scope["headers"]).encode()
        await send({"type": "http.response.body", "body": frame(text), "more_body": True})
        await _finish(send)
    elif path == "/raw.Raw/Ignore":
        key = unframe(bytearray(await _read_all(receive))) or b""
        _seen[key] = b"started"
        try:
            await anyio.sleep(60)
        except BaseException as exc:
            _seen[key] = type(exc).__name__.encode()
            raise
    elif path == "/raw.Raw/Seen":
        key = unframe(bytearray(await _read_all(receive))) or b""
        await _start(send)
        await send({"type": "http.response.body", "body": frame(_seen.get(key, b"")), "more_body": True})
        await _finish(send)
    else:  # trailers-only: the status rides in the only HEADERS, which ends the stream
        await _read_all(receive)
        await _start(send, [(b"grpc-status", b"12"), (b"grpc-message", b"no such method")], trailers=False)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
