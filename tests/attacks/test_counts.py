"""Connection and stream counts: ``--max-connections`` per process, MAX_CONCURRENT_STREAMS per connection."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from tests.attacks.conftest import Target
from tests.conformance.frames import REFUSED_STREAM, Peer, PeerClosed

LIMIT = 3


def _refused(port: int) -> bool:
    """Whether a new connection is closed by the server before any HTTP/2 (within 5 s)."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(5)
        try:
            return sock.recv(1024) == b""
        except ConnectionResetError:
            return True


def test_max_connections(target: Callable[..., Target]) -> None:
    t = target("--max-connections", str(LIMIT))
    held = [t.peer() for _ in range(LIMIT)]  # the limit, all handshaken and busy: none can be closed to make room
    for i, peer in enumerate(held):
        peer.request(f"/sleep?key=held-{i}&seconds=5")  # busy while the flood lasts
        t.log(rf"flow-app: held-{i} sleeping")
    for _ in range(20):  # a connection flood past the limit: each closed at once
        assert _refused(t.port)
    t.log(rf"\[WARNING\] --max-connections {LIMIT} reached")
    # The burst's total in one line once it is over, however many were refused.
    t.log(rf"\[WARNING\] --max-connections {LIMIT}: in [\d.]+s refused 20 new connection\(s\), closed 0 stalled")
    assert len([line for line in t.server.lines if "--max-connections" in line]) == 2
    for peer in held:
        peer.expect_alive()  # those already in are served
    held.pop().close()
    deadline = time.monotonic() + 15
    while True:  # a slot frees (the closed one's app ends, or the others go idle and make room)
        try:
            newcomer = Peer("h2c", t.port)
            break
        except (PeerClosed, ConnectionError, AssertionError):
            assert time.monotonic() < deadline, "the freed connection slot was never reused"
            time.sleep(0.05)
    sid = newcomer.request()
    headers, body = newcomer.expect_response(sid)
    assert (headers[b":status"], body) == (b"200", b"hello")
    t.memory_bounded()


def test_excess_streams_are_refused(target: Callable[..., Target]) -> None:
    """Over MAX_CONCURRENT_STREAMS: REFUSED_STREAM for the excess, never a queue (RFC 9113 §5.1.2)."""
    t = target("--max-concurrent-streams", "5")
    peer = t.peer()
    assert peer.server_settings[3] == 5  # SETTINGS_MAX_CONCURRENT_STREAMS advertised
    sleepers = [peer.request(f"/sleep?key=streams-{i}&seconds=3") for i in range(5)]
    for i in range(5):
        t.log(rf"flow-app: streams-{i} sleeping")
    extra = [peer.request() for _ in range(3)]
    for sid in extra:
        peer.expect_rst(sid, REFUSED_STREAM)
    t.log(
        r"stream \d+ from 127\.0\.0\.1:\d+: refused, over SETTINGS_MAX_CONCURRENT_STREAMS \d+ "
        r"\(RST_STREAM REFUSED_STREAM\)"
    )
    t.bystander_served()
    headers, body = peer.expect_response(sleepers[0])
    assert (headers[b":status"], body) == (b"200", b"slept")
    t.memory_bounded()
