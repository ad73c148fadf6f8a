"""Requests on the hosted asyncio loop start without a trio task (h2gate.asgi.http.OffTaskCall).

They keep every guarantee a stream task gave: a client reset cancels the app
after the reset grace, a lost connection cancels it at --graceful-timeout,
the access log has one line per request with the right outcome, and an app
that mixes answered-at-once and waiting requests on one connection gets all
of them right.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

import pytest

from tests.conformance.frames import CANCEL, Peer, rst_frame
from tests.conftest import ServerProcess
from tests.h2raw import RawH2

APP = "apps.flow:app"


@pytest.mark.timeout(30)
def test_reset_cancels_an_app_that_never_waited_in_trio(serve: Callable[..., ServerProcess]) -> None:
    server = serve(APP, "--loop", "asyncio")
    key = uuid.uuid4().hex
    peer = Peer("h2c", server.port)
    try:
        sid = peer.request(f"/sleep?key={key}&seconds=30")
        server.wait_for_log(f"flow-app: {key} sleeping")
        peer.send(rst_frame(sid, CANCEL))
        server.wait_for_log(rf"flow-app: {key} cancelled \(CancelledError\)", timeout=5)
        line = server.wait_for_log(rf"GET /sleep\?key={key}&seconds=30 HTTP/2", timeout=5)
        assert '" - reset 0 ' in line, line
        answered = peer.request("/hello")  # the connection serves on
        headers, body = peer.expect_response(answered)
        assert headers[b":status"] == b"200" and body == b"hello"
    finally:
        peer.close()


@pytest.mark.timeout(30)
def test_lost_connection_cancels_the_app_at_the_graceful_timeout(serve: Callable[..., ServerProcess]) -> None:
    server = serve(APP, "--loop", "asyncio", "--graceful-timeout", "1")
    key = uuid.uuid4().hex
    peer = Peer("h2c", server.port)
    peer.request(f"/sleep?key={key}&seconds=30")
    server.wait_for_log(f"flow-app: {key} sleeping")
    peer.close()
    server.wait_for_log(rf"flow-app: {key} cancelled \(CancelledError\)", timeout=8)
    server.wait_for_log(rf"GET /sleep\?key={key}&seconds=30 HTTP/2\" - reset", timeout=5)


@pytest.mark.timeout(60)
def test_one_access_line_per_request_mixed_with_waiting_ones(serve: Callable[..., ServerProcess]) -> None:
    """Answered-at-once requests (no trio task) beside uploads (a trio task to read the body) on one connection."""
    server = serve(APP, "--loop", "asyncio")
    key = uuid.uuid4().hex
    with RawH2(server.port) as client:
        sids = []
        for i in range(40):
            if i % 4 == 3:
                sids.append(client.request("POST", f"/upload?key={key}-{i}", body=b"x" * 1000))
            else:
                sids.append(client.request("GET", f"/hello?n={key}-{i}"))
        for sid in sids:
            stream = client.response(sid)
            assert stream.status == 200 and stream.reset is None, (sid, stream.status, stream.reset)
    server.wait_for_log(rf"/upload\?key={key}-39 HTTP/2\" 200", timeout=5)
    lines = [line for line in server.lines if key in line and "HTTP/2" in line]
    assert len(lines) == 40, lines
    assert len({re.search(r"stream=(\d+)", line).group(1) for line in lines}) == 40  # type: ignore[union-attr]
