"""ASGI HTTP/2 extensions: response trailers, 103 Early Hints and pathsend, seen by real clients."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from h2.errors import ErrorCodes
from hyperframe.frame import HeadersFrame

from h2gate.asgi.http import HTTP_EXTENSIONS
from tests.h2raw import RawH2

APP = "apps.ext:app"


@pytest.fixture(params=["asyncio", "trio"])
def server(request: pytest.FixtureRequest, serve):  # type: ignore[no-untyped-def]
    return serve(APP, "--loop", request.param)


def test_extensions_advertised(server) -> None:
    with RawH2(server.port) as client:
        names = json.loads(client.get("/extensions").body)
    assert "http.response.trailers" in names
    assert "http.response.early_hint" in names
    assert "http.response.pathsend" in names
    assert "http.response.zerocopysend" in names
    assert "http.request.trailers" in names
    assert "http.response.push" in names  # h2 clients accept pushes unless they say otherwise
    assert set(HTTP_EXTENSIONS) <= set(names)  # (the scope's builder writes the list out)


def test_trailers_end_the_stream(server) -> None:
    with RawH2(server.port) as client:
        stream = client.get("/trailers")
        assert stream.status == 200
        assert stream.body == b"abcdef"
        assert stream.reset is None and stream.ended
        # Both trailer messages arrive in one HEADERS block that carries END_STREAM.
        assert stream.trailers == [(b"x-checksum", b"123"), (b"x-more", b"2")]
        order = stream.events
        assert order.index("TrailersReceived") > max(i for i, k in enumerate(order) if k == "DataReceived")
        # The last DATA frame did not end the stream: the trailers did.
        # h2 reports END_STREAM right after the frame that carried it.
        assert order[-2:] == ["TrailersReceived", "StreamEnded"] and order.count("StreamEnded") == 1


def test_trailers_after_empty_body(server) -> None:
    with RawH2(server.port) as client:
        stream = client.get("/trailers-no-body")
        assert stream.status == 200 and stream.body == b""
        assert stream.trailers == [(b"grpc-status", b"0")]
        assert stream.events[-2:] == ["TrailersReceived", "StreamEnded"]


def test_trailers_on_head_are_dropped(server) -> None:
    with RawH2(server.port) as client:
        stream = client.get("/trailers", method="HEAD")
        assert stream.status == 200 and stream.ended and stream.reset is None
        assert stream.trailers is None


def test_announced_trailers_never_sent_resets(server) -> None:
    with RawH2(server.port) as client:
        stream = client.get("/trailers-forgotten")
        assert stream.status == 200
        assert stream.reset == ErrorCodes.INTERNAL_ERROR
        assert stream.trailers is None
    server.wait_for_log("before finishing the response body")


def test_unannounced_trailers_are_an_app_error(server) -> None:
    with RawH2(server.port) as client:
        stream = client.get("/trailers-unannounced")
        assert stream.reset == ErrorCodes.INTERNAL_ERROR
        assert stream.trailers is None
    server.wait_for_log("did not set trailers: True")


def test_early_hints_raw(server) -> None:
    with RawH2(server.port) as client:
        stream = client.get("/hints")
        assert stream.status == 200 and stream.body == b"hinted"
        hints = stream.informational
        assert [h[0] for h in hints] == [(b":status", b"103")] * 2
        assert hints[0][1:] == [(b"link", b"</style.css>; rel=preload; as=style")]
        assert hints[1][1:] == [
            (b"link", b"</app.js>; rel=preload; as=script"),
            (b"link", b"</font.woff2>; rel=preload; as=font"),
        ]
        hint_event = "InformationalResponseReceived"
        assert stream.events[:3] == [hint_event, hint_event, "ResponseReceived"]


@pytest.mark.skipif(shutil.which("nghttp") is None, reason="nghttp is not installed")
def test_early_hints_nghttp(serve) -> None:
    server = serve(APP)
    out = subprocess.run(
        ["nghttp", "-v", server.url + "/hints"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    assert out.count(":status: 103") == 2
    assert "link: </app.js>; rel=preload; as=script" in out
    assert out.index(":status: 103") < out.index(":status: 200")
    assert "hinted" in out


@pytest.fixture
def big_file(tmp_path: Path) -> Path:
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(300_000))  # several times the default 65535-byte window
    return path


def test_pathsend_streams_the_file(server, big_file: Path) -> None:
    with RawH2(server.port) as client:
        stream = client.get(f"/pathsend?file={big_file}")
        assert stream.status == 200 and stream.ended and stream.reset is None
        assert stream.body == big_file.read_bytes()
        assert stream.header(b"content-length") == b"300000"


def test_pathsend_respects_flow_control(serve, big_file: Path) -> None:
    server = serve(APP)
    with RawH2(server.port, auto_ack=False) as client:
        sid = client.request("GET", f"/pathsend?file={big_file}")
        stream = client.response(sid, until=lambda s: s.received >= 65_535)
        client.pump(0.5)
        assert stream.received == 65_535 and not stream.done  # stalls at the initial window
        client.ack(sid)
        client.wait_for(lambda: stream.received >= 2 * 65_535 or stream.done)
        while not stream.done:
            client.ack(sid)
            client.pump(0.2)
        assert stream.body == big_file.read_bytes()


def test_pathsend_keeps_app_content_length(server, big_file: Path) -> None:
    with RawH2(server.port) as client:
        stream = client.get(f"/pathsend?file={big_file}&length=300000")
        assert stream.header(b"content-length") == b"300000"
        assert [v for k, v in stream.headers if k == b"content-length"] == [b"300000"]
        assert len(stream.body) == 300_000


def test_pathsend_head_sends_no_body(server, big_file: Path) -> None:
    with RawH2(server.port) as client:
        stream = client.get(f"/pathsend?file={big_file}", method="HEAD")
        assert stream.status == 200 and stream.body == b""
        assert stream.header(b"content-length") == b"300000"


def test_pathsend_missing_file_is_500(server, tmp_path: Path) -> None:
    with RawH2(server.port) as client:
        stream = client.get(f"/pathsend?file={tmp_path / 'nope'}")
        assert stream.status == 500
    server.wait_for_log("cannot open")


def test_pathsend_wrong_length_is_an_error(server, big_file: Path) -> None:
    with RawH2(server.port) as client:
        stream = client.get(f"/pathsend?file={big_file}&length=10")
        assert stream.reset == ErrorCodes.INTERNAL_ERROR or stream.status == 500
    server.wait_for_log("longer than its content-length")


# -- request trailers (http.request.trailers; WSGI h2gate.request_trailers) ---------------------------

BODIES = "apps.bodies:app"
TRAILERS = [(b"x-checksum", b"abc123"), (b"grpc-timeout", b"1S")]


@pytest.fixture(params=["asyncio", "trio"])
def bodies(request: pytest.FixtureRequest, serve):  # type: ignore[no-untyped-def]
    return serve(BODIES, "--loop", request.param)


def _send_with_trailers(client: RawH2, body: bytes, trailers: list[tuple[bytes, bytes]]) -> dict[str, object]:
    """POST ``body`` in DATA frames (as the windows allow), end it with a trailer section; the JSON answer."""
    sid = client.request("POST", "/trailers", end_stream=False)
    view, sent = memoryview(body), 0
    for _ in range(200):
        if sent == len(body):
            break
        sent += client.send_body(sid, view[sent:])
        if sent < len(body):
            client.pump(0.2)  # let the server's WINDOW_UPDATEs in
    assert sent == len(body)
    client.send_trailers(sid, trailers)
    stream = client.response(sid)
    assert stream.status == 200, stream.body
    return json.loads(stream.body)  # type: ignore[no-any-return]


def test_request_trailers_reach_the_asgi_app(bodies) -> None:
    with RawH2(bodies.port) as client:
        seen = _send_with_trailers(client, b"hello trailers", TRAILERS)
    assert seen["advertised"] is True
    messages = seen["messages"]
    assert isinstance(messages, list) and messages[-1]["more_body"] is False
    assert messages[-1]["trailers"] == [["x-checksum", "abc123"], ["grpc-timeout", "1S"]]
    assert all(m["trailers"] is None for m in messages[:-1])  # only the final http.request carries them
    assert sum(m["body"] for m in messages) == len(b"hello trailers")


def test_request_trailers_after_a_large_body(bodies) -> None:
    body = os.urandom(400_000)  # more than the stream window: several http.request messages
    with RawH2(bodies.port) as client:
        seen = _send_with_trailers(client, body, [(b"x-sum", b"1")])
    messages = seen["messages"]
    assert isinstance(messages, list) and len(messages) > 1
    assert sum(m["body"] for m in messages) == len(body)
    assert messages[-1]["trailers"] == [["x-sum", "1"]]
    assert all(m["trailers"] is None for m in messages[:-1])


def test_request_trailers_without_a_body(bodies) -> None:
    with RawH2(bodies.port) as client:
        sid = client.request("POST", "/trailers", end_stream=False)
        client.send_trailers(sid, [(b"x-only", b"trailers")])
        stream = client.response(sid)
    messages = json.loads(stream.body)["messages"]
    assert messages == [{"body": 0, "more_body": False, "trailers": [["x-only", "trailers"]]}]


def test_no_trailers_no_key(bodies) -> None:
    with RawH2(bodies.port) as client:
        stream = client.get("/trailers", method="POST", body=b"plain")
    seen = json.loads(stream.body)
    assert seen["advertised"] is True
    assert seen["messages"] == [{"body": 5, "more_body": False, "trailers": None}]


@pytest.mark.skipif(shutil.which("nghttp") is None, reason="nghttp is not installed")
def test_request_trailers_from_nghttp(bodies, tmp_path: Path) -> None:
    upload = tmp_path / "upload.bin"
    upload.write_bytes(os.urandom(100_000))
    out = subprocess.run(
        ["nghttp", "-d", str(upload), "--trailer", "x-digest: sha-256=abc", bodies.url + "/trailers"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    seen = json.loads(out)
    assert sum(m["body"] for m in seen["messages"]) == 100_000
    assert seen["messages"][-1]["trailers"] == [["x-digest", "sha-256=abc"]]


def test_request_trailers_reach_the_wsgi_app(serve) -> None:
    server = serve("apps.bodies:wsgi", "--interface", "wsgi")
    body = os.urandom(300_000)
    with RawH2(server.port) as client:
        seen = _send_with_trailers(client, body, TRAILERS)
    assert seen["size"] == len(body)
    assert seen["trailers"] == [["x-checksum", "abc123"], ["grpc-timeout", "1S"]]


def test_malformed_request_trailers_reset_the_stream(bodies) -> None:
    with RawH2(bodies.port) as client:
        sid = client.request("POST", "/trailers", end_stream=False)
        # h2 will not send a pseudo-header in trailers: build the HEADERS frame by hand.
        block = client.h2.encoder.encode([(b":path", b"/sneaky")])
        frame = HeadersFrame(sid, block, flags=["END_HEADERS", "END_STREAM"])
        client.sock.sendall(frame.serialize())
        stream = client.response(sid)
        assert stream.reset == ErrorCodes.PROTOCOL_ERROR
        assert client.get("/trailers").status == 200  # the connection carries on
