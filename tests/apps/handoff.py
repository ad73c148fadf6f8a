"""Apps for the paths where the server sends a response's last piece without the app waiting.

* ASGI ``/after``: sends the whole response, then keeps running until ``/release`` (or 10 s);
  the response must reach the client before the app returns.
* ASGI ``/bad-final``: a final ``http.response.body`` whose body is not bytes (a 500).
* ASGI ``/release``: lets ``/after`` finish.
* WSGI ``wsgi``: ``/close-fails`` returns a complete body whose ``close()`` raises.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

_released = False


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global _released
    if scope["type"] != "http":
        return
    path = scope["path"]
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    if path == "/after":
        _released = False
        await send({"type": "http.response.body", "body": b"sent before the app returned"})
        for _ in range(1000):  # bounded: 10 s at most
            if _released:
                break
            await _sleep(0.01)
    elif path == "/bad-final":
        await send({"type": "http.response.body", "body": "not bytes"})
    else:
        _released = True
        await send({"type": "http.response.body", "body": b"released"})


async def _sleep(seconds: float) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # --loop trio
        import trio

        await trio.sleep(seconds)
    else:
        await asyncio.sleep(seconds)


class _FailingClose:
    def __iter__(self) -> Iterator[bytes]:
        return iter([b"complete body"])

    def close(self) -> None:
        time.sleep(0.01)
        raise RuntimeError("close failed on purpose")


def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
    if environ["PATH_INFO"] == "/close-fails":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
        return _FailingClose()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"head" if environ["REQUEST_METHOD"] == "HEAD" else b"ok"]
