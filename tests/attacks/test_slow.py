"""Slow and stalling clients: slowloris at each stage, zero-window stall, unread sockets, empty frames.

CVE-2019-9511 (data dribble), CVE-2019-9517 (internal data buffering), CVE-2019-9518 (empty frames):
a client that never opens its window or never reads holds bounded memory (one chunk per stream plus
the writer's high-water mark) and is dropped after ``--send-timeout``.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import pytest
from hyperframe.frame import DataFrame, GoAwayFrame, HeadersFrame, RstStreamFrame

from tests.attacks.conftest import Target
from tests.conformance.frames import INITIAL_WINDOW_SIZE, data_frame, window_update

ENHANCE_YOUR_CALM, CANCEL, NO_ERROR = 0xB, 0x8, 0x0


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes ``sock`` (which sends nothing) within ``seconds``."""
    sock.settimeout(seconds)
    try:
        return sock.recv(65_536) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_tls_handshake_timeout(target: Callable[..., Target]) -> None:
    t = target("--handshake-timeout", "0.5", tls=True)
    with socket.create_connection(("127.0.0.1", t.port)) as sock:  # no ClientHello, ever
        assert _closed_within(sock, 5)
    t.log(r"\[INFO\] TLS handshake with 127\.0\.0\.1:\d+ timed out after 0\.5s")
    t.memory_bounded()


def test_preface_timeout(target: Callable[..., Target]) -> None:
    t = target("--handshake-timeout", "0.5")
    with socket.create_connection(("127.0.0.1", t.port)) as sock:
        sock.sendall(b"PRI * HTTP/2.0\r\n")  # half a preface, then nothing
        t.bystander_served()
        assert _closed_within(sock, 5)
    t.log(r"no HTTP/2 preface from 127\.0\.0\.1:\d+ within 0\.5s")


def test_idle_connection_timeout(target: Callable[..., Target]) -> None:
    """Idle connections are normal: their close is logged at DEBUG. No PING probing (the timeout suffices)."""
    t = target("--keep-alive-timeout", "0.5", "--log-level", "debug")
    peer = t.peer()
    peer.expect_goaway(NO_ERROR)
    t.log(r"\[DEBUG\] closing idle connection from 127\.0\.0\.1:\d+")


def test_request_body_idle_timeout(target: Callable[..., Target]) -> None:
    t = target("--body-timeout", "0.5")
    peer = t.peer()
    sid = peer.request("/wait-body?key=idle-body", end_stream=False)
    peer.send(data_frame(sid, b"0123456789"))
    t.bystander_served()
    peer.expect_rst(sid, CANCEL)
    t.log(rf"stream {sid} from 127\.0\.0\.1:\d+: request body idle for 0\.5s \(RST_STREAM CANCEL\)")
    t.log(r"flow-app: idle-body got http.disconnect after 10 bytes")
    peer.expect_alive()  # a stream error only


def test_empty_data_frames_do_not_keep_a_body_alive(target: Callable[..., Target]) -> None:
    t = target("--body-timeout", "0.5")
    peer = t.peer()
    sid = peer.request("/wait-body?key=empty-keepalive", end_stream=False)
    resets: list[RstStreamFrame] = []
    for _ in range(15):  # an empty DATA frame every 0.2 s: no bytes, so the body is still idle
        peer.send(data_frame(sid, b""))
        resets += [f for f in peer.read_frames(timeout=0.2) if isinstance(f, RstStreamFrame)]
        if resets:
            break
    assert [(r.stream_id, r.error_code) for r in resets] == [(sid, CANCEL)]
    t.log(rf"stream {sid} from 127\.0\.0\.1:\d+: request body idle for 0\.5s")


def test_slow_but_steady_body_is_not_cut(target: Callable[..., Target]) -> None:
    t = target("--body-timeout", "0.5")
    peer = t.peer()
    sid = peer.request("/wait-body?key=steady-body", end_stream=False)
    for _ in range(8):  # 1.6 s in all, never 0.5 s without DATA
        peer.send(data_frame(sid, b"x"))
        time.sleep(0.2)
    peer.send(data_frame(sid, b"", end_stream=True))
    headers, body = peer.expect_response(sid)
    assert (headers[b":status"], body) == (b"200", b"8")


def test_zero_window_stall(target: Callable[..., Target]) -> None:
    t = target("--send-timeout", "0.5")
    peer = t.peer(settings={INITIAL_WINDOW_SIZE: 0})
    sid = peer.request("/download?key=zero-window&size=1000000")
    peer.wait_for(lambda f: isinstance(f, HeadersFrame) and f.stream_id == sid)
    t.bystander_served()
    started = time.monotonic()
    resets: list[RstStreamFrame] = []
    for _ in range(15):  # connection-level updates open nothing for the stream: they must not extend the stall
        peer.send(window_update(0, 1000))
        resets += [f for f in peer.read_frames(timeout=0.2) if isinstance(f, RstStreamFrame)]
        if resets:
            break
    assert [(r.stream_id, r.error_code) for r in resets] == [(sid, CANCEL)]
    assert time.monotonic() - started < 2
    t.log(
        rf"stream {sid} from 127\.0\.0\.1:\d+: the client gave no flow-control window for 0\.5s \(RST_STREAM CANCEL\)"
    )
    t.log(r"flow-app: zero-window send failed")
    assert not [f for f in peer.frames if isinstance(f, DataFrame) and f.data]
    peer.expect_alive()
    t.memory_bounded()


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "tls"])
def test_client_that_never_reads_is_dropped(target: Callable[..., Target], tls: bool) -> None:
    """Open windows, then never read: the writer stalls, and only it holds our bytes (bounded)."""
    t = target("--send-timeout", "1", tls=tls)
    peer = t.peer(settings={INITIAL_WINDOW_SIZE: 2**31 - 1}, rcvbuf=4096)
    peer.send(window_update(0, 2**31 - 1 - 65_535))
    sids = [peer.request(f"/download?key=unread-{i}&size=50000000&on_error=return") for i in range(4)]
    t.bystander_served()
    t.log(r"\[WARNING\] closing connection from 127\.0\.0\.1:\d+: it did not read our bytes for 1s \(send timeout\)")
    t.memory_bounded()
    peer.read_frames(timeout=0.5)  # what the kernel buffers held, then the close
    peer.expect_closed()
    for i in range(len(sids)):
        t.log(rf"flow-app: unread-{i} send failed")
    t.bystander_served()


def test_empty_data_frame_flood(target: Callable[..., Target]) -> None:
    t = target("--max-empty-frames-per-second", "100")
    peer = t.peer()
    sid = peer.request("/wait-body?key=empty-data", end_stream=False)
    peer.send(data_frame(sid, b"") * 50)
    t.bystander_served()
    peer.send_for(data_frame(sid, b"") * 500, timeout=5)
    peer.expect_goaway(ENHANCE_YOUR_CALM)
    t.log(r"closing connection from 127\.0\.0\.1:\d+: flood of empty frames \(GOAWAY ENHANCE_YOUR_CALM\)")
    t.memory_bounded()


def test_empty_data_with_end_stream_is_not_counted(target: Callable[..., Target]) -> None:
    t = target("--max-empty-frames-per-second", "1")
    peer = t.peer()
    for _ in range(5):
        sid = peer.request("/hello", end_stream=False)
        peer.send(data_frame(sid, b"", end_stream=True))
        headers, _ = peer.expect_response(sid)
        assert headers[b":status"] == b"200"
    peer.expect_alive()


def test_data_dribble_holds_bounded_memory(target: Callable[..., Target]) -> None:
    """One-byte WINDOW_UPDATEs make the server send one-byte DATA frames: slow, but bounded and served."""
    t = target()
    peer = t.peer(settings={INITIAL_WINDOW_SIZE: 0})
    sids = [peer.request(f"/download?key=dribble-{i}&size=10000000&on_error=return") for i in range(10)]
    received = 0
    for _ in range(200):
        peer.send(*(window_update(sid, 1) for sid in sids))
        received += sum(len(f.data) for f in peer.read_frames(timeout=0.005) if isinstance(f, DataFrame))
    t.bystander_served()
    assert 0 < received <= 200 * len(sids)
    bad = [f for f in peer.frames if isinstance(f, GoAwayFrame | RstStreamFrame)]
    assert not bad, bad
    t.memory_bounded()
