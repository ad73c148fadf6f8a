"""Helpers for the process-model tests: an app that answers with its PID, written into a temp dir."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx

from tests.conftest import ServerProcess, h2c_client

PID_APP = """
import asyncio
import os
import time

VERSION = "{version}"


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = message["type"].rsplit(".", 1)[-1]
            await send({{"type": message["type"] + ".complete"}})
            if kind == "shutdown":
                return
    if scope["path"] == "/block":
        open(os.path.join(os.path.dirname(__file__), "blocked"), "w").close()
        time.sleep(60)  # blocks the worker's event loop (trio's or the hosted asyncio one): it cannot stop by itself
    if scope["path"] == "/hang":
        open(os.path.join(os.path.dirname(__file__), "blocked"), "w").close()
        await asyncio.sleep(60)  # a request in flight that the worker keeps waiting for
    body = f"{{VERSION}} {{os.getpid()}}".encode()
    await send({{"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}})
    await send({{"type": "http.response.body", "body": body}})
"""


def write_app(directory: Path, version: str = "v1", *, broken: bool = False) -> Path:
    """Write ``directory/pidapp.py``; ``broken`` writes a syntax error instead."""
    path = directory / "pidapp.py"
    text = "def broken(:\n" if broken else PID_APP.format(version=version)
    path.write_text(text)
    return path


def ask(client: httpx.Client, url: str, path: str = "/") -> tuple[str, int]:
    """(version, pid) of the worker that answered."""
    response = client.get(url + path)
    assert response.status_code == 200
    version, pid = response.text.split()
    return version, int(pid)


def worker_pids(server: ServerProcess) -> list[int]:
    """PIDs from the "worker N ready" lines so far, in order."""
    return [int(m.group(1)) for line in server.lines for m in [re.search(r"worker (\d+) ready", line)] if m]


def wait_until(predicate: object, timeout: float = 20, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what}")


def versions_seen(url: str, count: int = 4) -> set[str]:
    """Versions answering ``count`` requests on fresh connections."""
    seen = set()
    for _ in range(count):
        with h2c_client() as client:
            seen.add(ask(client, url)[0])
    return seen
