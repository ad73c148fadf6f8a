"""Byte sequences a fuzzer found against the real server, each once a traceback, a blamed app or a flood of GOAWAYs.

Every one of them was a symptom of state with several owners (issue 18). They
now get a defined answer: the right frame, at most one log line that blames
the client, and never a traceback or an app error.
"""

from __future__ import annotations

import re
import struct
import time
from collections.abc import Callable

from hyperframe.frame import GoAwayFrame

from tests.attacks.conftest import Target, rss_kib
from tests.conformance.frames import (
    DATA,
    GOAWAY,
    HEADERS,
    PING,
    Peer,
    data_frame,
    headers_frame,
    raw_frame,
    request_headers,
)
from tests.conftest import ServerProcess
from tests.h2raw import RawH2

END_STREAM, END_HEADERS = 0x1, 0x4
PROTOCOL_ERROR, STREAM_CLOSED, FRAME_SIZE_ERROR, ENHANCE_YOUR_CALM = 0x1, 0x5, 0x6, 0xB


def quiet(output: str) -> list[str]:
    """Lines that would alarm an operator: tracebacks, ERROR lines, app blamed."""
    return [
        line
        for line in output.splitlines()
        if "Traceback" in line or "[ERROR]" in line or "internal error" in line or "error in the app" in line
    ]


def goaway_bytes(last: int, code: int) -> bytes:
    return raw_frame(GOAWAY, 0, 0, struct.pack(">II", last, code))


def test_malformed_request_and_client_goaway_in_one_write(target: Callable[..., Target]) -> None:
    """Finding 1: resetting the malformed stream met h2's closed state machine: ERROR and a traceback."""
    t = target()
    peer = t.peer()
    sid = peer.new_stream_id()
    bad = headers_frame(sid, peer.block(request_headers(extra=[("connection", "close")])))
    peer.send(bad + goaway_bytes(0, PROTOCOL_ERROR))
    peer.expect_closed()
    t.log(r"client 127\.0\.0\.1:\d+ sent GOAWAY PROTOCOL_ERROR: closing")
    t.bystander_served()
    assert quiet(t.server.output) == []


def test_websocket_stream_ended_twice_then_malformed_headers(serve: Callable[..., ServerProcess]) -> None:
    """Finding 2: DATA with END_STREAM, then trailers, then a bad HEADERS: a KeyError out of simple_response."""
    server = serve("apps.ws:app", "--loop", "trio")
    peer = Peer("h2c", server.port)
    assert peer.server_settings.get(0x8) == 1  # SETTINGS_ENABLE_CONNECT_PROTOCOL
    sid = peer.new_stream_id()
    connect = [
        (":method", "CONNECT"),
        (":protocol", "websocket"),
        (":scheme", "http"),
        (":path", "/echo"),
        (":authority", "localhost"),
        ("sec-websocket-version", "13"),
    ]
    peer.send(headers_frame(sid, peer.block(connect), end_stream=False))
    peer.wait_for(lambda f: f.stream_id == sid)  # the 200 that accepts it
    trailers = headers_frame(sid, peer.block([("x-after", "end")]), end_stream=True)
    other = headers_frame(peer.new_stream_id(), peer.block([(":method", "GET"), ("Bad", "x")]))
    peer.send(data_frame(sid, b"\x81\x02hi", end_stream=True) + trailers + other)
    frames = peer.read_frames(timeout=2)
    goaways = [f for f in frames if isinstance(f, GoAwayFrame)]
    assert len(goaways) <= 1
    with RawH2(server.port) as client:  # another client is still served
        assert client.get("/").status == 200
    assert quiet(server.output) == []


def test_connection_error_while_the_app_runs_does_not_blame_the_app(target: Callable[..., Target]) -> None:
    """Finding 3: the app's next send() was logged as 'ASGI error in the app: invalid response headers'."""
    t = target("--loop", "asyncio")
    peer = t.peer()
    sid = peer.request("/sleep?key=finding3&seconds=0.5")
    t.log("flow-app: finding3 sleeping")
    peer.send(data_frame(99, b"x"))  # DATA on an idle stream: a connection error
    peer.expect_goaway(PROTOCOL_ERROR)
    t.log("flow-app: finding3 woke up")
    time.sleep(0.3)  # the app's send after waking has been made and failed as a disconnect
    assert sid == 1
    assert quiet(t.server.output) == []
    t.bystander_served()


def test_a_ping_flood_gets_one_goaway_and_one_line(target: Callable[..., Target]) -> None:
    """Finding 4: one flooding connection was closed 4,288 times: as many GOAWAYs and WARNING lines."""
    t = target("--max-control-frames", "100")
    peer = t.peer(rcvbuf=4096)
    flood = raw_frame(PING, 0, 0, b"flooding") * 1000
    for _ in range(200):
        if not peer.send_for(flood, timeout=1):
            break
    t.log(r"flood of control frames")
    frames = peer.read_frames(timeout=3)
    peer.expect_closed()
    assert len([f for f in frames if isinstance(f, GoAwayFrame)]) <= 1
    assert len(re.findall(r"flood of control frames", t.server.output)) == 1


def test_log_lines_say_what_happened_in_words(target: Callable[..., Target]) -> None:
    """Finding 5: 'protocol error from …: 1 (GOAWAY STREAM_CLOSED)', h2's bare stream number."""
    t = target()
    peer = t.peer()
    sid = peer.request("/hello")
    peer.expect_response(sid)
    peer.send(data_frame(sid, b"late", end_stream=True))
    peer.expect_goaway(STREAM_CLOSED)
    line = t.log(r"protocol error from 127\.0\.0\.1:\d+: .*\(GOAWAY STREAM_CLOSED\)")
    assert "frame on stream 1 after it was closed" in line


def test_an_oversized_frame_is_refused_on_its_header(target: Callable[..., Target]) -> None:
    """Finding 6: a frame header declaring 16 MiB was buffered up to its length; twenty cost +320 MB."""
    t = target()
    before = rss_kib(t.server)
    peers = []
    for _ in range(20):
        peer = t.peer()
        peer.send(raw_frame(DATA, 0, 1, b"", length=2**24 - 1) + b"x" * 1_000_000)
        peers.append(peer)
    for peer in peers:
        goaway = peer.expect_goaway(FRAME_SIZE_ERROR)
        assert goaway.error_code == FRAME_SIZE_ERROR
    assert (rss_kib(t.server) - before) / 1024 < 40
    t.log(r"a frame of 16777215 bytes, over SETTINGS_MAX_FRAME_SIZE \(GOAWAY FRAME_SIZE_ERROR\)")


def test_garbage_after_the_preface_is_refused_at_once(target: Callable[..., Target]) -> None:
    """A first frame that is not SETTINGS gets GOAWAY PROTOCOL_ERROR without waiting for more bytes."""
    t = target()
    peer = t.peer(handshake=False)
    started = time.monotonic()
    peer.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + raw_frame(HEADERS, END_HEADERS, 1, b"", length=10_000_000)[:9])
    peer.expect_goaway(FRAME_SIZE_ERROR)
    peer2 = t.peer(handshake=False)
    peer2.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + raw_frame(PING, 0, 0, b"12345678"))
    peer2.expect_goaway(PROTOCOL_ERROR)
    assert time.monotonic() - started < 3
    assert END_STREAM and quiet(t.server.output) == []
