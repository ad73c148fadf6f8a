"""A WSGI app stuck in a blocking call must not keep the server from stopping."""

from __future__ import annotations

import re
import threading
import time
import uuid

import httpx

from tests.conftest import h2c_client


def test_stuck_wsgi_thread_does_not_block_shutdown(serve) -> None:
    server = serve("apps.wsgi_apps:app", "--interface", "wsgi", "--graceful-timeout", "1")
    key = uuid.uuid4().hex
    outcome: list[object] = []

    def request() -> None:
        try:
            with h2c_client() as client:
                outcome.append(client.get(f"{server.url}/hold?key={key}&n=1&t=120").status_code)
        except httpx.HTTPError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=request, daemon=True)
    thread.start()
    server.wait_for_log(f"wsgi-app: {key} started 1")
    started = time.monotonic()
    assert server.stop() == 0
    assert time.monotonic() - started < 10
    assert "the thread is left to finish" in server.output
    assert re.search(r"graceful timeout: 1 stream\(s\) from \S+ cut", server.output)
    thread.join(10)
    assert outcome and isinstance(outcome[0], httpx.HTTPError), outcome
