"""WSGI apps giving response trailers to ``environ["wsgi.ext.http.send_trailers"]`` (test_wsgi_trailers.py)."""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import Any

Environ = dict[str, Any]
StartResponse = Callable[..., Any]


def _body_then_trailers(send: Callable[[list[tuple[str, str]]], None]) -> Iterator[bytes]:
    yield b"abc"
    yield b"def"
    send([("x-checksum", "123")])
    send([("X-More", " 2 ")])  # a second call adds to the same section (names lowercased, values stripped)
    yield b""  # what connectrpc yields after its trailers: nothing more for the body


class _GivesInClose:
    """An iterable whose close() gives the trailers: still in time, the app's call is not over."""

    def __init__(self, send: Callable[[list[tuple[str, str]]], None]) -> None:
        self.send = send

    def __iter__(self) -> Iterator[bytes]:
        return iter([b"closing"])

    def close(self) -> None:
        self.send([("x-in-close", "1")])


class _ListGivesInClose(list[bytes]):
    """A list body (its length known, so it would get a content-length) whose close() gives trailers."""

    send: Callable[[list[tuple[str, str]]], None]

    def close(self) -> None:
        self.send([("x-in-close", "list")])


class _LateFile(io.FileIO):
    """A regular file for wsgi.file_wrapper (streamed, END_STREAM on its last DATA) giving trailers in close()."""

    send: Callable[[list[tuple[str, str]]], None]

    def close(self) -> None:
        if not self.closed:
            super().close()
            self.send([("x-late", "1")])


def _late_file(environ: Environ) -> Any:
    fd, path = tempfile.mkstemp()
    os.write(fd, b"file body")
    os.close(fd)
    file = _LateFile(path)
    os.unlink(path)
    file.send = environ["wsgi.ext.http.send_trailers"]
    return environ["wsgi.file_wrapper"](file)


def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    send = environ["wsgi.ext.http.send_trailers"]
    path = environ["PATH_INFO"]
    if path == "/trailers":
        start_response("200 OK", [("content-type", "text/plain")])
        return _body_then_trailers(send)
    if path == "/early":  # given before start_response and before any body: held until the body ends
        send([("x-early", "yes")])
        start_response("200 OK", [])
        return [b"early ", b"body"]
    if path == "/no-body":  # a gRPC trailers-after-headers response with no message
        start_response("200 OK", [("content-type", "application/grpc")])
        send([("grpc-status", "0")])
        return []
    if path == "/never":
        start_response("200 OK", [])
        return [b"plain"]
    if path == "/hop-by-hop":
        start_response("200 OK", [])
        send([("connection", "close"), ("x-kept", "1")])
        return [b"hop"]
    if path == "/write-then-trailers":
        write = start_response("200 OK", [])
        write(b"written ")
        send([("x-after-write", "1")])
        return [b"returned"]
    if path.startswith("/bad/"):
        start_response("200 OK", [])
        return _bad(send, path.removeprefix("/bad/"))
    if path == "/in-close":
        start_response("200 OK", [])
        return _GivesInClose(send)
    if path == "/first-read":  # what one read(64 KiB) returns while the client still sends
        start_response("200 OK", [])
        return [f"{len(environ['wsgi.input'].read(65536))}".encode()]
    if path == "/list-in-close":
        start_response("200 OK", [])
        body = _ListGivesInClose([b"listed"])
        body.send = send
        return body
    if path == "/late":
        start_response("200 OK", [])
        return _late_file(environ)
    start_response("404 Not Found", [])
    return [b"no such path"]


def _bad(send: Callable[..., None], kind: str) -> Iterator[bytes]:
    yield b"partial"
    bad: Any = {
        "name": [("bad name", "x")],
        "pseudo": [(":status", "200")],
        "value": [("x-v", "a\r\nb")],
        "bytes": [(b"x-bytes", b"1")],
        "not-a-list": "x-a: 1",
    }
    if kind == "swallowed":  # the app catches the mistake and ends normally: the stream is reset all the same
        try:
            send([("bad name", "x")])
        except RuntimeError:
            pass
        yield b" and more"
        return
    send(bad[kind])
