"""Graceful shutdown, the grace period, the second Ctrl-C, and the idle keep-alive timeout."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
import uuid

import pytest

from tests.h2raw import GoAway, RawH2
from tests.protocol.test_flow_control import no_errors

APP = "apps.flow:app"
MAX_STREAM_ID = 2**31 - 1


def exit_code(server, timeout: float) -> int:
    try:
        return server.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"h2gate did not exit within {timeout}s:\n{server.output}")


@pytest.mark.timeout(40)
@pytest.mark.parametrize(("tls", "loop"), [(False, "trio"), (False, "asyncio"), (True, "asyncio")])
def test_sigterm_finishes_in_flight_request(serve, certs, tls: bool, loop: str) -> None:
    server = serve(APP, "--loop", loop, tls=tls)
    server.wait_for_log("flow-app: lifespan startup")
    key = uuid.uuid4().hex
    with RawH2(server.port, ca_pem=certs.ca_pem if tls else None) as client:
        assert client.get("/hello").status == 200  # stream 1
        sid = client.request("GET", f"/sleep?key={key}&seconds=1")  # stream 3
        stream = client.streams[sid]
        server.wait_for_log(f"flow-app: {key} sleeping")
        server.send_signal(signal.SIGTERM)

        # First GOAWAY: "stop opening streams", last id 2^31-1 so nothing in flight is lost.
        client.wait_for(lambda: len(client.goaways) >= 1, what="the first GOAWAY")
        assert client.goaways[0] == GoAway(MAX_STREAM_ID, 0, b"")
        assert not stream.done, "the in-flight request must not be cut short"
        # The listening socket is closed: new connections are refused.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", server.port), timeout=5).close()

        # The in-flight request completes normally.
        client.response(sid, timeout=10)
        assert stream.ended and stream.reset is None
        assert stream.status == 200 and bytes(stream.data) == b"slept"
        # Second GOAWAY names the last stream the server processed.
        client.wait_for(lambda: len(client.goaways) >= 2, what="the final GOAWAY")
        assert client.goaways[1] == GoAway(sid, 0, b"")
        assert len(client.goaways) == 2
        client.wait_eof(10)

    assert exit_code(server, 15) == 0
    server.wait_for_log(r"flow-app: lifespan shutdown complete")
    assert f"flow-app: {key} woke up" in server.output
    assert no_errors(server.output) == []


@pytest.mark.timeout(40)
@pytest.mark.parametrize("loop", ["trio", "asyncio"])
def test_graceful_timeout_cancels_slow_request(serve, loop: str) -> None:
    server = serve(APP, "--loop", loop, "--graceful-timeout", "1")
    key = uuid.uuid4().hex
    with RawH2(server.port) as client:
        sid = client.request("GET", f"/sleep?key={key}&seconds=30")
        stream = client.streams[sid]
        server.wait_for_log(f"flow-app: {key} sleeping")
        started = time.monotonic()
        server.send_signal(signal.SIGTERM)
        code = exit_code(server, 10)
        elapsed = time.monotonic() - started
        client.wait_eof(5)
    assert code == 0
    assert 0.9 <= elapsed < 5, elapsed
    # The request never completed: the app was cancelled, the client got RST_STREAM CANCEL (not a
    # silent close) and the access log says the stream was cut, not served.
    assert not stream.ended and stream.status != 200 and stream.reset == 8
    assert client.goaways and client.goaways[0].error_code == 0
    server.wait_for_log(r"graceful timeout: 1 stream\(s\) from 127\.0\.0\.1:\d+ cut")
    server.wait_for_log(rf'"GET /sleep\?key={key}&seconds=30 HTTP/2" - cut ')
    server.wait_for_log(rf"flow-app: {key} cancelled \((Cancelled|CancelledError)\)")
    assert f"flow-app: {key} woke up" not in server.output
    server.wait_for_log("flow-app: lifespan shutdown complete")


@pytest.mark.timeout(40)
@pytest.mark.parametrize("loop", ["trio", "asyncio"])
def test_second_sigint_exits_at_once(serve, loop: str) -> None:
    server = serve(APP, "--loop", loop)  # default grace period: 30 s
    key = uuid.uuid4().hex
    with RawH2(server.port) as client:
        client.request("GET", f"/sleep?key={key}&seconds=30")
        server.wait_for_log(f"flow-app: {key} sleeping")
        server.send_signal(signal.SIGINT)
        server.wait_for_log("received SIGINT: stopping gracefully")
        client.wait_for(lambda: bool(client.goaways), what="GOAWAY")  # shutdown is under way
        assert server.proc.poll() is None  # still waiting for the in-flight request
        started = time.monotonic()
        server.send_signal(signal.SIGINT)
        code = exit_code(server, 10)
        elapsed = time.monotonic() - started
    assert code != 0 and code == 130
    assert elapsed < 3, elapsed
    server.wait_for_log("second SIGINT: exiting now")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("make_request", [True, False])
def test_idle_connection_closed_after_keep_alive_timeout(serve, make_request: bool) -> None:
    server = serve(APP, "--keep-alive-timeout", "1")
    with RawH2(server.port) as client:
        if make_request:
            assert client.get("/hello").data == b"hello"
        else:
            client.wait_for(lambda: bool(client.remote_settings), what="the server's SETTINGS")
        started = time.monotonic()
        client.wait_eof(10)
        elapsed = time.monotonic() - started
    assert 0.8 <= elapsed < 4, elapsed
    # Idle or not, the close is graceful: GOAWAY(2^31-1) and a PING first, the final GOAWAY after the ACK.
    assert client.goaways == [GoAway(2**31 - 1, 0, b""), GoAway(1 if make_request else 0, 0, b"")]
    assert server.proc.poll() is None  # only the connection was closed, not the server
    assert no_errors(server.output) == []


@pytest.mark.timeout(40)
def test_stream_opened_after_the_final_goaway_is_ignored_not_reset(serve) -> None:
    """A request already on the wire when the final GOAWAY left is left unanswered (RFC 9113 §6.8).
    A RST_STREAM read together with the GOAWAY makes httpx fail the request instead of retrying it."""
    from hyperframe.frame import GoAwayFrame

    from tests.conformance.frames import Peer, describe

    server = serve(APP)
    key = uuid.uuid4().hex
    peer = Peer("h2c", server.port)
    try:
        busy = peer.request(f"/sleep?key={key}&seconds=1.5")
        server.wait_for_log(f"flow-app: {key} sleeping")
        server.send_signal(signal.SIGTERM)
        first = peer.wait_for(lambda f: isinstance(f, GoAwayFrame))
        assert first.last_stream_id == MAX_STREAM_ID
        final = peer.wait_for(lambda f: isinstance(f, GoAwayFrame))
        assert final.last_stream_id == busy
        late = peer.request("/hello")  # as if sent before the final GOAWAY arrived
        headers, body = peer.expect_response(busy, timeout=10)
        assert headers[b":status"] == b"200" and body == b"slept"
        peer.expect_closed(10)
    finally:
        peer.close()
    assert late > final.last_stream_id
    on_late = [f for f in peer.frames if f.stream_id == late]
    assert on_late == [], describe(on_late)
    assert exit_code(server, 15) == 0
