"""A WSGI app for the worker-pool tests: it says on stderr which thread runs it and how its writes end."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

from apps.wsgi_apps import note


def app(environ: dict[str, Any], start_response: Any) -> Any:
    q = {k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}
    key, path = q.get("key", "-"), environ["PATH_INFO"]
    thread = threading.current_thread()
    if path == "/hold":  # sleeps t seconds in the app
        note(f"{key} started {q['n']} in {thread.name} daemon={thread.daemon}")
        time.sleep(float(q.get("t", "0.5")))
        note(f"{key} finished {q['n']}")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [q["n"].encode()]
    if path == "/stream":  # write() 16 KiB pieces (bounded) until a write fails; sleeps t seconds first
        write = start_response("200 OK", [("Content-Type", "application/octet-stream")])
        note(f"{key} started")
        time.sleep(float(q.get("t", "0")))
        piece = b"s" * 16_384
        try:
            for i in range(20_000):
                write(piece)
                if i == 0:
                    note(f"{key} wrote")
                time.sleep(0.001)
        except OSError as exc:
            note(f"{key} write failed: {type(exc).__name__} oserror=True")
            raise
        note(f"{key} wrote everything")
        return []

    if path == "/exit":  # what a script-minded app might do
        raise SystemExit(int(q.get("code", "3")))

    def body() -> Iterator[bytes]:
        yield b"pool app\n"

    start_response("200 OK", [("Content-Type", "text/plain")])
    return body()
