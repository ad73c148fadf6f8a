"""A served request leaves no cyclic garbage: reference counting frees its objects (h2gate.ops.gctune relies on it).

Objects caught in a reference cycle wait for the cyclic collector, which was
10-15% of a worker's CPU under load before the bridge dropped its cycles. The
server runs in this process (the ``h2gate_server`` fixture), so the test
collects with ``DEBUG_SAVEALL`` and counts the garbage whose type comes from
h2gate: per-connection objects (a handful per connection) are allowed, anything
that grows with the number of requests is not.
"""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

REQUESTS = 60


async def app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
    if scope["type"] != "http":
        return
    if scope["method"] == "POST":
        while (await receive()).get("more_body"):
            pass
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"one ", "more_body": True})
    await send({"type": "http.response.body", "body": b"two"})


def _h2gate_garbage() -> Counter[str]:
    gc.collect()
    found = Counter(
        type(o).__qualname__
        for o in gc.garbage
        if type(o).__module__.startswith("h2gate.") or type(o).__qualname__ in ("Task", "coroutine")
    )
    gc.garbage.clear()
    return found


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_requests_leave_no_cyclic_garbage(h2gate_server: Callable[..., Any], loop: str) -> None:
    server = h2gate_server(app, loop=loop, lifespan="off")
    with server.client() as client:
        assert client.get("/").text == "one two"  # the connection and the loop are set up
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            gc.garbage.clear()
            for i in range(REQUESTS):
                if i % 2:
                    response = client.post("/", content=b"x" * 1000)
                else:
                    response = client.get("/")
                assert response.status_code == 200 and response.text == "one two"
            garbage = _h2gate_garbage()
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
    per_request = {name: n for name, n in garbage.items() if n >= REQUESTS // 2}
    assert not per_request, f"objects left to the cyclic collector per request: {per_request} (all: {garbage})"
