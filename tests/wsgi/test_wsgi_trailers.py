"""WSGI response trailers (``environ["wsgi.ext.http.send_trailers"]``), seen at the frame level."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from h2.errors import ErrorCodes

from tests.conftest import ServerProcess
from tests.h2raw import RawH2


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    proc = ServerProcess(["apps.wsgi_trailers:app", "--interface", "wsgi", "-b", "127.0.0.1:0"]).wait_ready()
    yield proc
    assert proc.stop() == 0, proc.output
    assert "Traceback" not in proc.output, proc.output


def test_trailers_end_the_stream_after_the_body(server: ServerProcess) -> None:
    with RawH2(server.port) as client:
        stream = client.get("/trailers")
    assert (stream.status, stream.body, stream.reset) == (200, b"abcdef", None)
    # Two calls, one trailer section; the last DATA did not carry END_STREAM, the trailers did.
    assert stream.trailers == [(b"x-checksum", b"123"), (b"x-more", b"2")]
    assert stream.events[-2:] == ["TrailersReceived", "StreamEnded"] and stream.events.count("StreamEnded") == 1


def test_trailers_given_before_the_body_wait_for_its_end(server: ServerProcess) -> None:
    with RawH2(server.port) as client:
        stream = client.get("/early")
    assert (stream.status, stream.body) == (200, b"early body")
    # No content-length of the server's own: nginx's grpc_pass ends a response at its length, dropping trailers.
    assert stream.header(b"content-length") is None
    assert stream.trailers == [(b"x-early", b"yes")]
    assert stream.events[-2:] == ["TrailersReceived", "StreamEnded"]


def test_trailers_after_write_and_iterable(server: ServerProcess) -> None:
    with RawH2(server.port) as client:
        stream = client.get("/write-then-trailers")
    assert stream.body == b"written returned"
    assert stream.trailers == [(b"x-after-write", b"1")]


def test_trailers_given_in_close_are_in_time(server: ServerProcess) -> None:
    with RawH2(server.port) as client:
        stream = client.get("/in-close")
    assert (stream.body, stream.trailers) == (b"closing", [(b"x-in-close", b"1")])


def test_trailers_after_a_known_length_body_drop_the_length(server: ServerProcess) -> None:
    with RawH2(server.port) as client:
        stream = client.get("/list-in-close")
    assert (stream.body, stream.trailers) == (b"listed", [(b"x-in-close", b"list")])
    assert stream.header(b"content-length") is None


def test_trailers_with_no_body(server: ServerProcess) -> None:
    with RawH2(server.port) as client:
        stream = client.get("/no-body")
    assert (stream.status, stream.body, stream.reset) == (200, b"", None)
    assert stream.header(b"content-length") is None
    assert stream.trailers == [(b"grpc-status", b"0")]
    assert "DataReceived" not in stream.events or stream.body == b""
    assert stream.events[-2:] == ["TrailersReceived", "StreamEnded"]


def test_never_called_ends_on_the_last_data(server: ServerProcess) -> None:
    with RawH2(server.port) as client:
        stream = client.get("/never")
    assert (stream.body, stream.trailers, stream.reset) == (b"plain", None, None)
    assert stream.header(b"content-length") == b"5"  # no trailers: the usual length
    assert stream.events[-2:] == ["DataReceived", "StreamEnded"]


def test_head_drops_trailers(server: ServerProcess) -> None:
    with RawH2(server.port) as client:
        stream = client.get("/trailers", method="HEAD")
    assert (stream.status, stream.body, stream.trailers, stream.reset) == (200, b"", None, None)


def test_connection_specific_trailers_are_dropped(server: ServerProcess) -> None:
    with RawH2(server.port) as client:
        stream = client.get("/hop-by-hop")
    assert stream.trailers == [(b"x-kept", b"1")]
    server.wait_for_log("dropping response header 'connection'")


@pytest.mark.parametrize(
    ("kind", "log"),
    [
        ("name", "'bad name'"),
        ("pseudo", "':status'"),
        ("value", "contains CR, LF or NUL"),
        ("bytes", "must be a pair of str"),
        ("not-a-list", "must be a list of"),
        ("swallowed", "'bad name'"),
    ],
)
def test_bad_trailers_reset_the_stream(server: ServerProcess, kind: str, log: str) -> None:
    with RawH2(server.port) as client:
        stream = client.get(f"/bad/{kind}")
        assert stream.status == 200
        assert stream.reset == ErrorCodes.INTERNAL_ERROR and stream.trailers is None
        assert client.get("/never").body == b"plain"  # the connection is fine
    line = server.wait_for_log(rf"GET /bad/{kind}: WSGI error in the app: wsgi.ext.http.send_trailers\(\): .*{log}")
    assert line.endswith("(stream reset)")
    assert sum(f"GET /bad/{kind}:" in line for line in server.lines) == 1  # one line, naming the real mistake


def test_trailers_after_the_response_ended_are_a_mistake(server: ServerProcess) -> None:
    with RawH2(server.port) as client:
        stream = client.get("/late")
    assert (stream.body, stream.trailers) == (b"file body", None)
    server.wait_for_log(r"GET /late: WSGI error in the app: .*called after the response was complete")


@pytest.mark.parametrize("content_type", ["application/grpc", "application/grpc-web+proto", "application/connect+json"])
def test_rpc_stream_reads_return_what_has_arrived(server: ServerProcess, content_type: str) -> None:
    """A streamed gRPC/Connect body: read(64 KiB) returns the 10 bytes sent so far, the stream still open."""
    with RawH2(server.port) as client:
        headers = [(b"content-type", content_type.encode())]
        sid = client.request("POST", "/first-read", headers=headers, body=b"0123456789", end_stream=False)
        stream = client.response(sid)  # the app answered without the rest: RST_STREAM NO_ERROR ends the upload
        assert stream.body == b"10"


def test_other_streamed_bodies_fill_the_read(server: ServerProcess) -> None:
    """Any other body keeps file semantics: read(n) waits for n bytes or the end."""
    with RawH2(server.port) as client:
        headers = [(b"content-type", b"application/octet-stream")]
        sid = client.request("POST", "/first-read", headers=headers, body=b"0123456789", end_stream=False)
        client.pump(0.3)
        assert client.streams[sid].status is None  # still waiting for more
        client.send_data(sid, b"abc", end_stream=True)
        assert client.response(sid).body == b"13"
