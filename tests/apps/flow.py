"""ASGI app for the protocol-loop acceptance tests (flow control, concurrency, shutdown).

It runs unchanged under ``--loop trio`` and ``--loop asyncio``: the helpers below
look at which event loop is running. Shared state lives in module globals (one
server process, one app loop thread), keyed by a ``key`` query parameter so
tests do not see each other's numbers. The app reports what it observed in two
ways the tests can read: response headers of ``/progress`` (not flow
controlled, so they arrive even when the connection window is exhausted) and
``flow-app:`` lines printed to stdout, which the server's log capture sees.

Endpoints (query parameters in brackets):

* ``/hello`` [pad]                   200 "hello" (with an ``x-pad`` header of ``pad`` bytes)
* ``/barrier`` [name, n, timeout]    waits until ``n`` requests of ``name`` are waiting, then 200 with
                                     "name:index/n"; 504 if that never happens within ``timeout``
* ``/upload`` [key, sleep_every, sleep]  reads the body slowly (sleeps every ``sleep_every`` receive()
                                     calls), counting consumed bytes; answers JSON {length, sha256}
* ``/download`` [key, size, chunk, seed, on_error]  streams ``size`` pseudo-random bytes, counting bytes
                                     whose send() returned; on OSError prints a line, then re-raises
                                     (on_error=raise) or returns (on_error=return)
* ``/wait-body`` [key]               reads the body, printing each chunk; reports http.disconnect
* ``/sleep`` [key, seconds]          prints "sleeping", sleeps, answers 200 "slept"; reports cancellation
* ``/progress`` [key]                headers x-consumed, x-max-chunk, x-sent, x-sends, empty body
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from typing import Any
from urllib.parse import parse_qs

from .common import read_body, respond, serve_lifespan

State = dict[str, Any]
_state: dict[str, State] = {}
_barriers: dict[str, State] = {}


def say(text: str) -> None:
    print(f"flow-app: {text}", flush=True)


def _asyncio_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def sleep(seconds: float) -> None:
    if _asyncio_running():
        await asyncio.sleep(seconds)
    else:
        import trio

        await trio.sleep(seconds)


def new_event() -> Any:
    if _asyncio_running():
        return asyncio.Event()
    import trio

    return trio.Event()


async def wait_event(event: Any, timeout: float) -> bool:
    """Wait for ``event`` at most ``timeout`` seconds; True if it was set."""
    if isinstance(event, asyncio.Event):
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return False
        return True
    import trio

    with trio.move_on_after(timeout):
        await event.wait()
    return event.is_set()


def random_chunks(seed: int, size: int, chunk: int) -> Any:
    """The deterministic byte stream /download sends (tests regenerate it to check the body)."""
    rng = random.Random(seed)
    left = size
    while left > 0:
        n = min(chunk, left)
        yield rng.randbytes(n)
        left -= n


def state(key: str) -> State:
    return _state.setdefault(key, {"consumed": 0, "max_chunk": 0, "sent": 0, "sends": 0})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await serve_lifespan(
            receive, send, startup=lambda: say("lifespan startup"), shutdown=lambda: say("lifespan shutdown complete")
        )
        return
    query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    handler = ROUTES.get(scope["path"], hello)
    await handler(query, receive, send)


def pad_value(size: int) -> bytes:
    """A header value of ``size`` visible bytes that HPACK's Huffman code cannot shrink much."""
    return (bytes(range(33, 127)) * (size // 94 + 1))[:size]


async def hello(query: dict[str, str], receive: Any, send: Any) -> None:
    await read_body(receive)
    extra = [(b"x-pad", pad_value(int(query["pad"])))] if "pad" in query else []
    await respond(send, 200, b"hello", [(b"content-type", b"text/plain"), *extra])


async def barrier(query: dict[str, str], receive: Any, send: Any) -> None:
    await read_body(receive)
    name, n = query["name"], int(query["n"])
    b = _barriers.setdefault(name, {"count": 0, "event": new_event()})
    b["count"] += 1
    index = b["count"]
    if index >= n:
        b["event"].set()
    if not await wait_event(b["event"], float(query.get("timeout", "15"))):
        await respond(send, 504, f"{name}: only {b['count']} of {n} arrived".encode())
        return
    await respond(send, 200, f"{name}:{index}/{n}".encode())


async def upload(query: dict[str, str], receive: Any, send: Any) -> None:
    st = state(query["key"])
    every, pause = int(query.get("sleep_every", "0")), float(query.get("sleep", "0"))
    digest = hashlib.sha256()
    calls = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            say(f"{query['key']} upload got http.disconnect after {st['consumed']} bytes")
            return
        body = message.get("body", b"")
        st["consumed"] += len(body)
        st["max_chunk"] = max(st["max_chunk"], len(body))
        digest.update(body)
        if not message.get("more_body", False):
            break
        calls += 1
        if every and calls % every == 0:
            await sleep(pause)
    payload = json.dumps({"length": st["consumed"], "sha256": digest.hexdigest()}).encode()
    await respond(send, 200, payload, [(b"content-type", b"application/json")])


async def download(query: dict[str, str], receive: Any, send: Any) -> None:
    key = query["key"]
    st = state(key)
    size, chunk, seed = int(query["size"]), int(query.get("chunk", "65536")), int(query.get("seed", "0"))
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(size).encode())]})
    try:
        for piece in random_chunks(seed, size, chunk):
            await send({"type": "http.response.body", "body": piece, "more_body": True})
            st["sent"] += len(piece)
            st["sends"] += 1
        await send({"type": "http.response.body", "body": b""})
    except OSError as exc:
        say(f"{key} send failed: {type(exc).__name__} oserror=True after {st['sent']} bytes")
        if query.get("on_error", "raise") == "raise":
            raise
        return
    say(f"{key} download complete")


async def wait_body(query: dict[str, str], receive: Any, send: Any) -> None:
    key = query["key"]
    total = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            say(f"{key} got http.disconnect after {total} bytes")
            return
        total += len(message.get("body", b""))
        say(f"{key} received {total} bytes")
        if not message.get("more_body", False):
            break
    await respond(send, 200, str(total).encode())


async def sleeper(query: dict[str, str], receive: Any, send: Any) -> None:
    key = query["key"]
    await read_body(receive)
    say(f"{key} sleeping")
    try:
        await sleep(float(query["seconds"]))
    except BaseException as exc:  # trio.Cancelled / asyncio.CancelledError
        say(f"{key} cancelled ({type(exc).__name__})")
        raise
    say(f"{key} woke up")
    await respond(send, 200, b"slept")


async def progress(query: dict[str, str], receive: Any, send: Any) -> None:
    st = state(query["key"])
    headers = [(f"x-{name.replace('_', '-')}".encode(), str(value).encode()) for name, value in st.items()]
    await respond(send, 200, b"", headers)


ROUTES = {
    "/hello": hello,
    "/barrier": barrier,
    "/upload": upload,
    "/download": download,
    "/wait-body": wait_body,
    "/sleep": sleeper,
    "/progress": progress,
}
