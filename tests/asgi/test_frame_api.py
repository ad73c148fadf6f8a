"""--enable-frame-api: per-frame events and raw frame writes for ASGI apps (the h2gate.frames extension).

Raw clients check the frames on the wire (tests/conformance/frames.py's Peer)
and how an h2 client copes with them (tests/h2raw.py's RawH2, httpx).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import h2.exceptions
import httpx
import pytest
from hyperframe.frame import ContinuationFrame, DataFrame, GoAwayFrame, HeadersFrame

from h2gate.asgi.frames import check_frame_api
from h2gate.config import load_config
from h2gate.errors import StartupError
from tests.conformance.frames import Peer, data_frame, headers_frame, request_headers
from tests.conftest import SERVER_CODEC, ServerProcess, h2c_client
from tests.h2raw import RawH2

APP = "apps.frames:app"
Serve = Callable[..., ServerProcess]


@pytest.fixture
def server(serve: Serve) -> ServerProcess:
    return serve(APP, "--enable-frame-api", "--log-level", "debug")


def test_warning_and_extension_present(server: ServerProcess) -> None:
    assert "[WARNING] FRAME API ENABLED (--enable-frame-api=on)" in server.output
    with h2c_client() as client:
        assert "h2gate.frames" in client.get(f"{server.url}/extensions").json()


def test_extension_absent_when_off(serve: Serve) -> None:
    server = serve(APP)
    with h2c_client() as client:
        assert "h2gate.frames" not in client.get(f"{server.url}/extensions").json()
    assert "FRAME API" not in server.output


def test_frame_events_come_before_their_request_bytes(server: ServerProcess) -> None:
    with RawH2(server.port) as raw:
        sid = raw.request("POST", "/seen", end_stream=False, headers=[(b"x-test", b"1")])
        raw.send_data(sid, b"ab")
        raw.send_trailers(sid, [(b"x-trailer", b"t")])
        seen = json.loads(raw.response(sid).body)
    headers, data, trailers, request = seen
    assert headers["type"] == "h2gate.frames.headers" and not headers["end_stream"]
    assert headers["headers"][0] == [":method", "POST"] and ["x-test", "1"] in headers["headers"]
    assert data == {"type": "h2gate.frames.data", "data": "ab", "end_stream": False, "flags": []}
    assert trailers == {"type": "h2gate.frames.headers", "headers": [["x-trailer", "t"]], "end_stream": True}
    assert request == {"type": "http.request", "body": "ab", "more_body": False}


def test_data_flags_report_end_stream_and_padding(server: ServerProcess) -> None:
    peer = Peer("h2c", server.port)
    try:
        sid = peer.new_stream_id()
        block = peer.block(request_headers("/seen", method="POST"))
        padded = DataFrame(sid, b"xyz", flags=["PADDED", "END_STREAM"])
        padded.pad_length = 4
        peer.send(headers_frame(sid, block, end_stream=False), padded)
        _, body = peer.expect_response(sid)
    finally:
        peer.close()
    data = json.loads(body)[1]
    # libnghttp2 (--codec ngh2) strips the padding and gives its window back itself: it never says there was any.
    flags = ["END_STREAM"] if SERVER_CODEC == "ngh2" else ["END_STREAM", "PADDED"]
    assert data == {"type": "h2gate.frames.data", "data": "xyz", "end_stream": True, "flags": flags}


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_reverse_each_data_frame(serve: Serve, loop: str) -> None:
    """The WPT-style handler: every DATA frame comes back reversed as its own frame, then a last one."""
    server = serve(APP, "--enable-frame-api", "--log-level", "debug", "--loop", loop)
    peer = Peer("h2c", server.port)
    try:
        sid = peer.request("/reverse", end_stream=False)
        head = peer.wait_for(lambda f: isinstance(f, HeadersFrame) and f.stream_id == sid)
        assert head.decoded[b":status"] == b"200"  # type: ignore[attr-defined]
        for chunk in (b"abc", b"hello", b"h2gate"):
            peer.send(data_frame(sid, chunk))
            frame = peer.wait_for(lambda f: isinstance(f, DataFrame) and f.stream_id == sid)
            assert (frame.data, frame.flags) == (chunk[::-1], set())
        peer.send(data_frame(sid, b"xy", end_stream=True))
        frame = peer.wait_for(lambda f: isinstance(f, DataFrame) and f.stream_id == sid)
        assert frame.data == b"yx"
        last = peer.wait_for(lambda f: isinstance(f, DataFrame) and f.stream_id == sid)
        assert (last.data, "END_STREAM" in last.flags) == (b"last", True)
        # Raw writes taint the connection: it is closed (GOAWAY NO_ERROR) once the stream's app returned.
        goaway = peer.expect_goaway(0)
        assert goaway.last_stream_id == sid
    finally:
        peer.close()
    server.wait_for_log(r"frame API: stream 1 wrote DataFrame\(stream_id=1, flags=\[\]\): <hex:636261>")


def test_raw_continuation_is_reassembled(server: ServerProcess) -> None:
    peer = Peer("h2c", server.port)
    try:
        sid = peer.request("/continuation")
        frames = [peer.wait_for(lambda f: f.stream_id == sid) for _ in range(4)]
    finally:
        peer.close()
    assert [type(f) for f in frames] == [HeadersFrame, ContinuationFrame, ContinuationFrame, DataFrame]
    assert [("END_HEADERS" in f.flags) for f in frames[:3]] == [False, False, True]
    # An h2 client puts the three fragments back together into one header section.
    with RawH2(server.port) as raw:
        response = raw.get("/continuation")
    assert response.status == 200 and response.body == b"continued"
    assert [h for h in response.headers if h[0].startswith(b"x-")] == [
        (b"x-one", b"1"),
        (b"x-two", b"2"),
        (b"x-three", b"3" * 100),
    ]


def test_push_promise_with_chosen_stream_id(server: ServerProcess) -> None:
    with RawH2(server.port) as raw:
        response = raw.get("/push")
        raw.wait_for(lambda: raw.streams[2].done, what="the pushed response")
    assert response.status == 200
    promised = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"localhost"), (b":path", b"/p")]
    assert raw.pushes == [(1, 2, promised)]
    assert (raw.streams[2].status, raw.streams[2].body) == (200, b"pushed")


def test_response_without_status_is_refused_by_clients(server: ServerProcess) -> None:
    # (httpx's HTTP/2 layer turns inbound header validation off, so it is the h2 client that checks this.)
    with RawH2(server.port) as raw, pytest.raises(h2.exceptions.ProtocolError, match="status"):
        raw.get("/no-status")


def test_invalid_hpack_is_a_compression_error_for_clients(server: ServerProcess) -> None:
    with RawH2(server.port) as raw, pytest.raises(h2.exceptions.ProtocolError, match="header block"):
        raw.get("/bad-hpack")
    with h2c_client() as client, pytest.raises(httpx.ProtocolError, match="Invalid table index 0"):
        client.get(f"{server.url}/bad-hpack")


def test_app_that_stops_after_raw_headers_gets_the_stream_reset(server: ServerProcess) -> None:
    peer = Peer("h2c", server.port)
    try:
        sid = peer.request("/half")
        peer.expect_rst(sid, 2)  # INTERNAL_ERROR: the app returned before ending the stream
        assert isinstance(peer.wait_for(lambda f: isinstance(f, GoAwayFrame)), GoAwayFrame)
    finally:
        peer.close()
    # The line may be read from the server's log a moment after the frames reach the client.
    server.wait_for_log("the app returned before finishing the response body")


def test_bad_frame_message_is_an_app_mistake(server: ServerProcess) -> None:
    with h2c_client() as client:
        assert client.get(f"{server.url}/bad-message").status_code == 500
    server.wait_for_log("h2gate.frames.send_data data must be bytes, not str")


def test_plain_requests_still_work_with_the_extension(server: ServerProcess) -> None:
    with h2c_client() as client:
        responses = [client.post(f"{server.url}/plain", content=b"x" * 70_000) for _ in range(3)]
    assert [r.text for r in responses] == ["plain"] * 3


# -- where it may be enabled -----------------------------------------------------------------------


def test_refused_on_a_non_loopback_bind(serve: Serve) -> None:
    # The check runs before any socket is opened: nothing listens on 0.0.0.0.
    proc = serve(APP, "--enable-frame-api", "--bind", "0.0.0.0:0", bind=False, wait=False)
    assert proc.proc.wait(timeout=30) == 1
    assert "h2gate: error: --enable-frame-api is for loopback binds only and 0.0.0.0:0 is not one" in proc.output


def test_unsafe_any_bind_spelling_starts(serve: Serve) -> None:
    server = serve(APP, "--enable-frame-api=unsafe-any-bind")
    assert "FRAME API ENABLED (--enable-frame-api=unsafe-any-bind)" in server.output


def test_environment_variable_enables_it(serve: Serve) -> None:
    server = serve(APP, env={"H2GATE_FRAME_API": "on"})
    with h2c_client() as client:
        assert "h2gate.frames" in client.get(f"{server.url}/extensions").json()


@pytest.mark.parametrize(
    ("mode", "binds", "refused"),
    [
        ("on", ["127.0.0.1:0", "[::1]:0", "localhost:0", "unix:/tmp/x.sock"], False),
        ("on", ["127.0.0.1:0", "10.0.0.1:80"], True),
        ("on", ["fd://3"], True),
        ("unsafe-any-bind", ["0.0.0.0:80", "fd://3"], False),
        ("off", ["0.0.0.0:80"], False),
    ],
)
def test_bind_check(mode: str, binds: list[str], refused: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LISTEN_FDS", raising=False)
    config = load_config({"frame_api": mode, "bind": binds}, environ={})
    if refused:
        with pytest.raises(StartupError, match="unsafe-any-bind"):
            check_frame_api(config)
    else:
        check_frame_api(config)


def test_in_process_server_offers_it(h2gate_server: Any) -> None:
    from tests.apps.frames import app

    server = h2gate_server(app, tls=False, frame_api="on")
    with server.client() as client:
        assert "h2gate.frames" in client.get("/extensions").json()


def test_workers_offer_it_and_warn_once(serve: Serve) -> None:
    server = serve(APP, "--enable-frame-api", "--workers", "2")
    with h2c_client() as client:
        assert "h2gate.frames" in client.get(f"{server.url}/extensions").json()
    assert server.output.count("FRAME API ENABLED") == 1
