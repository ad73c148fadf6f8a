"""A protocol core driven without a socket: bytes in, parsed frames out, a clock the test moves.

:class:`Harness` plays the client: it encodes frames with the conformance
suite's frame factory (:mod:`tests.conformance.frames`) and an HPACK encoder
of its own, feeds them to :meth:`ConnectionCore.receive`, and parses what the
core queued with hyperframe. Stream tasks are not run: the streams the core
spawns are collected in :attr:`Harness.spawned`, and a test plays their app
with :meth:`Harness.respond` (one short ``trio.run``) and ends them with
:meth:`Harness.finish`, as the driver would.

The core runs on the codec ``Harness(codec=...)`` names, else on :data:`CODEC`:
``tests/protocol/conftest.py`` runs every test that uses the harness once per
codec (h2, and ngh2 where it is installed).
"""

from __future__ import annotations

import struct
from typing import Any

import trio
from hpack import Decoder, Encoder
from hyperframe.frame import Frame, GoAwayFrame, HeadersFrame, PingFrame, RstStreamFrame, SettingsFrame

from h2gate.config import Config
from h2gate.protocol.core import ConnectionCore
from h2gate.protocol.stream import Stream
from tests.conformance.frames import (
    PREFACE,
    data_frame,
    headers_frame,
    raw_frame,
    request_headers,
)
from tests.h2raw import split_frames

PING, SETTINGS_TYPE, GOAWAY_TYPE = 0x6, 0x4, 0x7
#: The codec of a Harness that names none (set per test by tests/protocol/conftest.py).
CODEC = "h2"


class Harness:
    """One ConnectionCore and a scripted client (see the module docstring)."""

    def __init__(self, codec: str | None = None, **options: Any) -> None:
        self.config = Config(codec=codec or CODEC, **options)
        self.now = 1000.0
        self.spawned: list[Stream] = []
        self.finished: list[Stream] = []
        self.core = ConnectionCore(
            self.config,
            peer="192.0.2.1:5000",
            scheme="http",
            spawn=self.spawned.append,
            wake=lambda: None,
            clock=lambda: self.now,
        )
        self.encoder = Encoder()
        self.decoder = Decoder()
        self.frames: list[Frame] = []  # everything the core sent, parsed
        self.blocks: dict[int, list[list[tuple[bytes, bytes]]]] = {}  # decoded header blocks by stream
        self._tail = b""
        self.core.start()
        self.collect()

    # -- the client's side -----------------------------------------------------------------------

    def feed(self, *pieces: bytes) -> list[Frame]:
        """Hand the core these bytes as one read; returns the frames it queued in answer."""
        self.core.receive(b"".join(pieces))
        return self.collect()

    def collect(self) -> list[Frame]:
        frames, self._tail = split_frames(self._tail + self.core.data_to_send())
        self.frames += frames
        for frame in frames:  # decoded once, in order: the HPACK table depends on it
            if isinstance(frame, HeadersFrame):
                self.blocks.setdefault(frame.stream_id, []).append(self.decoder.decode(frame.data, raw=True))
        self.core.drained.fire()
        return frames

    def handshake(self) -> list[Frame]:
        """The preface and the client's SETTINGS; then, as real clients do, the ACK of ours."""
        answer = self.feed(PREFACE, SettingsFrame(0).serialize())
        return answer + self.feed(SettingsFrame(0, flags=["ACK"]).serialize())

    def block(self, headers: list[tuple[Any, Any]]) -> bytes:
        return bytes(self.encoder.encode(headers))

    def request_bytes(self, sid: int, path: str = "/", *, end_stream: bool = True, extra: Any = None,
                      method: str = "GET") -> bytes:  # fmt: skip
        return headers_frame(sid, self.block(request_headers(path, method, extra)), end_stream=end_stream)

    def request(self, sid: int, path: str = "/", *, end_stream: bool = True, extra: Any = None,
                method: str = "GET") -> list[Frame]:  # fmt: skip
        return self.feed(self.request_bytes(sid, path, end_stream=end_stream, extra=extra, method=method))

    def data(self, sid: int, payload: bytes, *, end_stream: bool = False) -> list[Frame]:
        return self.feed(data_frame(sid, payload, end_stream=end_stream))

    def ping_bytes(self, opaque: bytes = b"12345678", *, ack: bool = False) -> bytes:
        return raw_frame(PING, 0x1 if ack else 0x0, 0, opaque)

    def tick(self, seconds: float) -> list[Frame]:
        """Let ``seconds`` pass and run the deadlines that came due, as the driver's timer would."""
        self.now += seconds
        self.core.on_timer()
        return self.collect()

    # -- the app's side --------------------------------------------------------------------------

    def stream(self, sid: int) -> Stream:
        return next(s for s in self.spawned if s.stream_id == sid)

    def respond(self, sid: int, status: int = 200, body: bytes = b"ok") -> list[Frame]:
        """Play the app: a complete response on ``sid`` (bounded: it never waits for window here)."""
        stream = self.stream(sid)

        async def answer() -> None:
            with trio.move_on_after(0.1):
                block = [(b":status", str(status).encode()), (b"content-length", str(len(body)).encode())]
                await stream.send_headers(block)
                await stream.send_data(body, end_stream=True)

        trio.run(answer)
        return self.collect()

    def finish(self, sid: int) -> list[Frame]:
        """The stream's task ended (the driver's ``stream_finished``)."""
        stream = self.stream(sid)
        self.core.stream_finished(stream)
        self.finished.append(stream)
        return self.collect()

    # -- what the core sent --------------------------------------------------------------------------

    def goaways(self) -> list[GoAwayFrame]:
        return [f for f in self.frames if isinstance(f, GoAwayFrame)]

    def rsts(self, sid: int | None = None) -> list[RstStreamFrame]:
        return [f for f in self.frames if isinstance(f, RstStreamFrame) and sid in (None, f.stream_id)]

    def pings(self) -> list[PingFrame]:
        return [f for f in self.frames if isinstance(f, PingFrame) and "ACK" not in f.flags]

    def responses(self, sid: int) -> list[list[tuple[bytes, bytes]]]:
        return self.blocks.get(sid, [])


def goaway_bytes(last: int, code: int) -> bytes:
    return raw_frame(GOAWAY_TYPE, 0, 0, struct.pack(">II", last, code))
