"""WSGI test apps. ``app`` is wrapped in ``wsgiref.validate.validator`` (run the server with
PYTHONWARNINGS=error::wsgiref.validate.WSGIWarning so its warnings fail the request and are
logged); ``raw`` is the same app unwrapped, for the content-length rules (the validator hides
the result's type) and the deliberate spec violations in /fault/*."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

from apps.wsgicheck import validator

progress: dict[str, int] = {}


def note(text: str) -> None:
    sys.stderr.write(f"wsgi-app: {text}\n")  # one write: lines from two threads never interleave
    sys.stderr.flush()


def respond(start_response: Any, body: bytes, status: str = "200 OK", ctype: str = "application/json") -> list[bytes]:
    start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))])
    return [body]


class Closing:
    """A body that says when it is closed."""

    def __init__(self, key: str, chunks: Iterator[bytes]) -> None:
        self.key, self.chunks = key, chunks

    def __iter__(self) -> Iterator[bytes]:
        return self.chunks

    def close(self) -> None:
        note(f"{self.key} closed")


def read_body(stream: Any, mode: str) -> list[bytes]:
    pieces: list[bytes] = []
    if mode == "read_n":
        while piece := stream.read(7):
            pieces.append(piece)
    elif mode == "read_big":
        while piece := stream.read(100_000):
            pieces.append(piece)
    elif mode == "read_all":
        pieces.append(stream.read(-1))
    elif mode == "readline":
        while line := stream.readline():
            pieces.append(line)
    elif mode == "readline_hint":
        while line := stream.readline(5):
            pieces.append(line)
    elif mode == "readlines":
        pieces.extend(stream.readlines())
    elif mode == "readlines_hint":
        while lines := stream.readlines(100):
            pieces.extend(lines)
    elif mode == "iter":
        pieces.extend(iter(stream))
    assert stream.read(10) == b"" and stream.readline() == b""
    return pieces


def dispatch(environ: dict[str, Any], start_response: Any) -> Any:
    path = environ["PATH_INFO"]
    q = {k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}
    key = q.get("key", "-")
    if path.startswith("/environ"):
        out = {k: v for k, v in environ.items() if isinstance(v, (str, bool, tuple))}
        return respond(start_response, json.dumps(out).encode())
    if path == "/read":
        pieces = read_body(environ["wsgi.input"], q["mode"])
        body = b"".join(pieces)
        info = {"length": len(body), "sha256": hashlib.sha256(body).hexdigest(), "pieces": [len(p) for p in pieces]}
        return respond(start_response, json.dumps(info).encode())
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        for i in range(3):
            write(f"written {i}\n".encode())
        return iter([b"returned\n"])
    if path == "/exc-before":

        def before() -> Iterator[bytes]:
            start_response("200 OK", [("Content-Type", "text/plain")])
            try:
                raise ValueError("changed my mind")
            except ValueError:
                start_response("503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info())
            yield b"replaced"

        return before()
    if path == "/exc-after":

        def after() -> Iterator[bytes]:
            start_response("200 OK", [("Content-Type", "text/plain")])
            yield b"partial"
            try:
                raise ValueError("too late")
            except ValueError:
                start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
            yield b"never"

        return after()
    if path == "/slow-gen":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])

        def slow() -> Iterator[bytes]:
            for _ in range(10_000):
                yield b"x" * 65_536
                time.sleep(0.001)

        return Closing(key, slow())
    if path == "/raise-after-close-body":
        start_response("200 OK", [("Content-Type", "text/plain")])

        def boom() -> Iterator[bytes]:
            yield b"first"
            raise RuntimeError("body failed")

        return Closing(key, boom())
    if path == "/wait-input":
        stream = environ["wsgi.input"]
        got = 0
        try:
            while piece := stream.read(1000):
                got += len(piece)
                note(f"{key} received {got} bytes")
        except OSError as exc:
            note(f"{key} input failed after {got} bytes: {type(exc).__name__} oserror={isinstance(exc, OSError)}")
            raise
        return respond(start_response, b"{}")
    if path == "/pad":  # a response header block larger than one HTTP/2 frame
        from .flow import pad_value

        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Pad", pad_value(int(q["n"])).decode())])
        return [b"padded"]
    if path == "/cl":
        start_response("200 OK", [("Content-Type", "text/plain")])
        kind = q["kind"]
        if kind == "list1":
            return [b"hello"]
        if kind == "list3":
            return [b"a", b"bb", b"ccc"]
        if kind == "empty":
            return []
        return iter([b"a", b"bb", b"ccc"])
    if path == "/file":
        size = int(q["size"])
        fd, name = tempfile.mkstemp()
        with os.fdopen(fd, "wb") as fh:
            for i in range(0, size, 1 << 20):
                fh.write(bytes([i // (1 << 20) % 256]) * min(1 << 20, size - i))
        fh = open(name, "rb")
        os.unlink(name)
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](fh, 8192)
    if path == "/download":
        size, chunk = int(q["size"]), int(q.get("chunk", 65_536))
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        block = b"d" * chunk

        def gen() -> Iterator[bytes]:
            sent = 0
            while sent < size:
                piece = block[: size - sent]
                yield piece
                sent += len(piece)
                progress[key] = sent

        return Closing(key, gen())
    if path == "/upload":
        stream = environ["wsgi.input"]
        digest, total, n = hashlib.sha256(), 0, 0
        while piece := stream.read(65_536):
            digest.update(piece)
            total += len(piece)
            progress[key] = total
            n += 1
            if n % 8 == 0:
                time.sleep(0.002)
        return respond(start_response, json.dumps({"length": total, "sha256": digest.hexdigest()}).encode())
    if path == "/progress":
        # in a header: HEADERS are not flow-controlled, so the probe gets through a full window
        done = str(progress.get(key, 0))
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "0"), ("X-Done", done)])
        return []
    if path == "/hold":
        note(f"{key} started {q['n']}")
        time.sleep(float(q.get("t", "0.5")))
        note(f"{key} finished {q['n']}")
        return respond(start_response, q["n"].encode(), ctype="text/plain")
    if path == "/validator-warns":
        start_response("200", [("Content-Type", "text/plain")])  # no reason phrase: a WSGIWarning
        return [b"x"]
    if path == "/fault/before":
        raise RuntimeError("app failed before responding")
    if path == "/fault/after":
        start_response("200 OK", [("Content-Type", "text/plain")])

        def fails() -> Iterator[bytes]:
            yield b"some"
            raise RuntimeError("app failed mid-body")

        return fails()
    if path == "/fault/status":
        start_response("OK", [("Content-Type", "text/plain")])
        return [b"x"]
    if path == "/fault/header":
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Count", 1)])
        return [b"x"]
    if path == "/fault/no-start":
        return [b"body without start_response"]
    return respond(start_response, b"not found", "404 Not Found", "text/plain")


raw = dispatch
app = validator(dispatch)


def no_args() -> None:
    """Not an application at all: detection must fail with a clear message."""


class Ambiguous:
    def __call__(self, *args: Any) -> Any:
        raise AssertionError("detection must not call the app")


ambiguous = Ambiguous()
