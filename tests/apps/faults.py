"""ASGI apps that misbehave on purpose (``app``) or report what they were given (``probe``).

``app`` picks its fault from the path, so one server process serves every fault
test; ``/ok`` is the good request each test sends afterwards on the same
connection. ``probe`` answers with its scope as JSON (``/scope``) or streams a
line back for every ``http.request`` message it receives (``/chunks``).
"""

from __future__ import annotations

import json
from typing import Any

from .common import serve_lifespan

START = "http.response.start"
BODY = "http.response.body"


async def _drain(receive: Any) -> None:
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


def _start(status: Any = 200, headers: Any = None) -> dict[str, Any]:
    if headers is None:
        headers = [(b"content-type", b"text/plain")]
    return {"type": START, "status": status, "headers": headers}


def _body(body: Any = b"", more: bool = False) -> dict[str, Any]:
    return {"type": BODY, "body": body, "more_body": more}


# Each fault: path -> list of messages to send, then the app returns; a message
# that is an Exception instance is raised instead of sent.
FAULTS: dict[str, list[Any]] = {
    "/raise-before-start": [RuntimeError("boom before start")],
    "/raise-after-start": [_start(), RuntimeError("boom after start")],
    "/raise-after-body": [_start(), _body(b"partial", more=True), RuntimeError("boom after body")],
    "/no-response": [],
    "/raise-systemexit": [SystemExit(3)],
    "/return-mid-body": [_start(), _body(b"partial", more=True)],
    "/status-str": [_start("200"), _body(b"x")],
    "/status-99": [_start(99), _body(b"x")],
    "/status-1000": [_start(1000), _body(b"x")],
    "/status-bool": [_start(True), _body(b"x")],
    "/header-name-str": [_start(200, [("x-name", b"v")]), _body(b"x")],
    "/header-value-str": [_start(200, [(b"x-value", "v")]), _body(b"x")],
    "/header-triple": [_start(200, [(b"x-a", b"1", b"2")]), _body(b"x")],
    "/header-not-pair": [_start(200, [b"x-a"]), _body(b"x")],
    "/headers-not-list": [_start(200, 42), _body(b"x")],
    "/header-crlf": [_start(200, [(b"x-split", b"a\r\nset-cookie: evil=1")]), _body(b"x")],
    "/header-space-name": [_start(200, [(b"bad name", b"v")]), _body(b"x")],
    "/header-pseudo": [_start(200, [(b":status", b"201")]), _body(b"x")],
    "/start-twice": [_start(), _start(), _body(b"x")],
    "/body-before-start": [_body(b"x")],
    "/body-after-end": [_start(), _body(b"done"), _body(b"again")],
    "/unknown-type": [{"type": "http.response.bogus"}],
    "/unknown-type-after-start": [_start(), {"type": "http.response.bogus"}],
    "/not-a-dict": [[("type", START)]],
    "/body-str": [_start(), _body("text, not bytes")],
    "/body-str-after-body": [_start(), _body(b"partial", more=True), _body("text")],
    "/hop-by-hop": [
        _start(
            200,
            [
                (b"Connection", b"close"),
                (b"keep-alive", b"timeout=5"),
                (b"proxy-connection", b"keep-alive"),
                (b"transfer-encoding", b"chunked"),
                (b"upgrade", b"h2c"),
                (b"TE", b"gzip"),
                (b"x-padded", b"  padded value\t"),
                (b"X-Custom-Header", b"Mixed-Case-Value"),
                (b"Content-Type", b"text/plain"),
            ],
        ),
        _body(b"still fine"),
    ],
    "/cl-longer": [_start(200, [(b"content-length", b"3")]), _body(b"hello")],
    "/cl-longer-streamed": [
        _start(200, [(b"content-length", b"5")]),
        _body(b"abc", more=True),
        _body(b"def"),
    ],
    # a middle chunk over the length: streamed chunks after the first may skip the trip through trio
    "/cl-longer-mid-chunk": [
        _start(200, [(b"content-length", b"7")]),
        _body(b"abc", more=True),
        _body(b"de", more=True),
        _body(b"fgh", more=True),
        _body(b""),
    ],
    "/cl-shorter": [_start(200, [(b"content-length", b"10")]), _body(b"abc")],
    "/cl-shorter-streamed": [
        _start(200, [(b"content-length", b"10")]),
        _body(b"abc", more=True),
        _body(b"de"),
    ],
    "/cl-not-a-number": [_start(200, [(b"content-length", b"ten")]), _body(b"x")],
    "/head": [_start(200, [(b"content-type", b"text/plain"), (b"content-length", b"11")]), _body(b"hello world")],
    "/head-streamed": [
        _start(200, [(b"content-type", b"text/plain"), (b"content-length", b"11")]),
        _body(b"hello", more=True),
        _body(b" ", more=True),
        _body(b"world"),
    ],
    "/head-no-length": [_start(200, [(b"x-kind", b"streamed")]), _body(b"abc", more=True), _body(b"def")],
}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        raise RuntimeError(f"the faults app only speaks http, not {scope['type']}")
    await _drain(receive)
    steps = FAULTS.get(scope["path"])
    if steps is None:
        await send(_start())
        await send(_body(b"ok"))
        return
    for step in steps:
        if isinstance(step, BaseException):
            raise type(step)(*step.args)
        await send(step)


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"bytes": value.decode("latin-1")}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


async def probe(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await serve_lifespan(receive, send, startup=lambda: scope["state"].update(probe="ready"))
        return
    path = scope["path"]
    if path.endswith("/chunks"):
        # One response line per http.request message, sent as soon as it arrives.
        await send(_start())
        while True:
            message = await receive()
            if message["type"] != "http.request":
                print(f"probe: {scope['path']} unexpected {message['type']} while reading the body", flush=True)
                return
            more = message.get("more_body", False)
            line = f"{len(message['body'])} {message['body'].decode()} more={more}\n"
            await send(_body(line.encode(), more=more))
            if not more:
                break
        after = await receive()
        print(f"probe: {scope['path']} receive() after the response -> {after['type']}", flush=True)
        return
    if path.endswith("/wait-disconnect"):
        # Read until the client gives up, then say what we saw.
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                print(f"probe: {scope['path']} got http.disconnect before responding", flush=True)
                return
    body = bytearray()
    messages = 0
    while True:
        message = await receive()
        messages += 1
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    view = dict(scope)
    view["state"] = dict(scope["state"])
    view["body"] = bytes(body)
    view["messages"] = messages
    payload = json.dumps(_jsonable(view)).encode()
    await send(_start(200, [(b"content-type", b"application/json")]))
    await send(_body(payload))
