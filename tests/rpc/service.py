"""The Probe service (probe.proto) as connectrpc ASGI and WSGI apps: the gRPC matrix's server side.

``Msg.text`` says what a call should do; every handler notes what happened to
it under ``Msg.key`` (finished, or the exception that ended it: a
cancellation, a disconnect), which a later ``Seen`` call reads back. The
server runs one worker, so the notes are shared by every call.

Served as ``rpc.service:asgi_app`` (asyncio or trio: the async handlers sleep
with anyio) and ``rpc.service:wsgi_app``. The generated code (package
``probegen``) is made at test time: see tests/rpc/conftest.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator

import anyio
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext
from probegen.probe_connect import ProbeASGIApplication, ProbeWSGIApplication  # type: ignore[import-not-found]
from probegen.probe_pb2 import Msg  # type: ignore[import-not-found]
from protobuf.wkt import Any

#: Large enough for the 4 MiB-payload case (connectrpc's default limit is 4 MiB for the whole message).
MAX_MESSAGE = 16 * 1024 * 1024

_seen: dict[str, str] = {}
_lock = threading.Lock()
Ctx = RequestContext[object, object]


def note(key: str, what: str) -> None:
    if key:
        with _lock:
            _seen[key] = what


def _ended_by(exc: BaseException) -> str:
    """The exception's type name; a ConnectError's code too (connectrpc's request stream raises CANCELED)."""
    if isinstance(exc, ConnectError):
        return f"ConnectError:{exc.code.name}"
    if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        return _ended_by(exc.exceptions[0])
    return type(exc).__name__


def _unary_reply(request: Msg, ctx: Ctx) -> Msg:
    """What Unary answers for the modes that do not wait."""
    mode = request.text
    headers = ctx.request_headers
    if mode == "error":
        # connectrpc's details are protobuf-py messages: the google.protobuf Msg travels packed in its Any.
        detail = Any(
            type_url="type.googleapis.com/h2gate.probe.v1.Msg", value=Msg(text="why: testing").SerializeToString()
        )
        raise ConnectError(Code.FAILED_PRECONDITION, "the probe failed on purpose", details=[detail])
    if mode == "metadata":
        ctx.response_headers["x-head"] = "in headers"
        ctx.response_trailers["x-tail"] = "in trailers"
        ctx.response_trailers["x-tail-bin"] = "AAEC"  # base64 of b"\0\1\2"
        return Msg(text=headers.get("x-asked", ""))
    if mode == "bad-trailer":  # a field the server must refuse: the stream is reset
        ctx.response_trailers["bad name"] = "x"
        return Msg(text="never seen")
    if mode == "deadline":  # the grpc-timeout the handler sees, in ms
        remaining = ctx.timeout_ms
        return Msg(text="none" if remaining is None else str(int(remaining)))
    # echo: the payload back, plus how it came (for the compression case)
    ctx.response_headers["x-request-encoding"] = headers.get("grpc-encoding", "identity")
    return Msg(text="echo", seq=request.seq, payload=request.payload)


class AsyncProbe:
    async def unary(self, request: Msg, ctx: Ctx) -> Msg:
        if request.text != "sleep":
            return _unary_reply(request, ctx)
        note(request.key, "started")
        try:
            await anyio.sleep(request.delay_ms / 1000)
        except BaseException as exc:
            note(request.key, _ended_by(exc))
            raise
        note(request.key, "finished")
        return Msg(text="slept")

    async def server_stream(self, request: Msg, ctx: Ctx) -> AsyncIterator[Msg]:
        note(request.key, "started")
        try:
            for seq in range(request.count):
                if seq and request.delay_ms:
                    await anyio.sleep(request.delay_ms / 1000)
                yield Msg(seq=seq, text=f"{time.time():.6f}", payload=request.payload)
        except BaseException as exc:
            note(request.key, _ended_by(exc))
            raise
        note(request.key, "finished")

    async def client_stream(self, requests: AsyncIterator[Msg], ctx: Ctx) -> Msg:
        texts, count, size = [], 0, 0
        async for request in requests:
            texts.append(request.text)
            count += 1
            size += len(request.payload)
        return Msg(text=",".join(texts), count=count, seq=size)

    async def bidi(self, requests: AsyncIterator[Msg], ctx: Ctx) -> AsyncIterator[Msg]:
        key = ""
        try:
            async for request in requests:
                key = key or request.key
                note(key, "started")
                if request.delay_ms:
                    await anyio.sleep(request.delay_ms / 1000)
                yield Msg(seq=request.seq, text=request.text, payload=request.payload)
        except BaseException as exc:
            note(key, _ended_by(exc))
            raise
        note(key, "finished")

    async def seen(self, request: Msg, ctx: Ctx) -> Msg:
        return Msg(text=_seen.get(request.key, ""))


class SyncProbe:
    def unary(self, request: Msg, ctx: Ctx) -> Msg:
        if request.text != "sleep":
            return _unary_reply(request, ctx)
        note(request.key, "started")
        time.sleep(request.delay_ms / 1000)  # a thread cannot be cancelled: the reply finds the stream gone
        note(request.key, "finished")
        return Msg(text="slept")

    def server_stream(self, request: Msg, ctx: Ctx) -> Iterator[Msg]:
        note(request.key, "started")
        try:
            for seq in range(request.count):
                if seq and request.delay_ms:
                    time.sleep(request.delay_ms / 1000)
                yield Msg(seq=seq, text=f"{time.time():.6f}", payload=request.payload)
        except BaseException as exc:  # GeneratorExit: the server closed the response (client gone)
            note(request.key, _ended_by(exc))
            raise
        note(request.key, "finished")

    def client_stream(self, requests: Iterator[Msg], ctx: Ctx) -> Msg:
        texts, count, size = [], 0, 0
        for request in requests:
            texts.append(request.text)
            count += 1
            size += len(request.payload)
        return Msg(text=",".join(texts), count=count, seq=size)

    def bidi(self, requests: Iterator[Msg], ctx: Ctx) -> Iterator[Msg]:
        key = ""
        try:
            for request in requests:
                key = key or request.key
                note(key, "started")
                if request.delay_ms:
                    time.sleep(request.delay_ms / 1000)
                yield Msg(seq=request.seq, text=request.text, payload=request.payload)
        except BaseException as exc:  # ClientDisconnected from wsgi.input, or GeneratorExit
            note(key, _ended_by(exc))
            raise
        note(key, "finished")

    def seen(self, request: Msg, ctx: Ctx) -> Msg:
        return Msg(text=_seen.get(request.key, ""))


asgi_app = ProbeASGIApplication(AsyncProbe(), read_max_bytes=MAX_MESSAGE)
wsgi_app = ProbeWSGIApplication(SyncProbe(), read_max_bytes=MAX_MESSAGE)
