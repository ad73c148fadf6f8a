"""The one WSGI app the WSGI servers in the benchmark serve: the same routes as bench/app.py.

* ``/``         -> 200, the 13 bytes ``Hello, world!`` (a one-item list with content-length)
* ``/download`` -> 200, 5 MiB yielded as 80 chunks of 64 KiB
* anything else -> 404
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

HELLO = b"Hello, world!"
CHUNK_SIZE = 64 * 1024
DOWNLOAD_CHUNKS = 80  # 80 * 64 KiB = 5 MiB
DOWNLOAD_SIZE = CHUNK_SIZE * DOWNLOAD_CHUNKS
_CHUNK = b"x" * CHUNK_SIZE

_HELLO_HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(HELLO)))]
_DOWNLOAD_HEADERS = [("Content-Type", "application/octet-stream"), ("Content-Length", str(DOWNLOAD_SIZE))]
_NOT_FOUND_HEADERS = [("Content-Type", "text/plain"), ("Content-Length", "9")]


def _download() -> Iterator[bytes]:
    for _ in range(DOWNLOAD_CHUNKS):
        yield _CHUNK


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    if path == "/":
        start_response("200 OK", _HELLO_HEADERS)
        return [HELLO]
    if path == "/download":
        start_response("200 OK", _DOWNLOAD_HEADERS)
        return _download()
    start_response("404 Not Found", _NOT_FOUND_HEADERS)
    return [b"not found"]
