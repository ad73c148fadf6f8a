"""ASGI HTTP/2 extensions: response trailers, 103 Early Hints and pathsend, seen by real clients."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import h2.events
import pytest
from h2.errors import ErrorCodes

from tests.h2raw import RawH2

APP = "apps.ext:app"


class HintsClient(RawH2):
    """RawH2 that also records 1xx responses and response trailers per stream."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.informational: dict[int, list[list[tuple[bytes, bytes]]]] = {}
        self.trailers: dict[int, list[tuple[bytes, bytes]]] = {}
        self.order: dict[int, list[str]] = {}
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def _process(self, data: bytes) -> None:
        events = self.h2.receive_data(data)
        rest = []
        for event in events:
            sid = getattr(event, "stream_id", None)
            if isinstance(event, h2.events.InformationalResponseReceived):
                self.informational.setdefault(event.stream_id, []).append(list(event.headers))
                self.order.setdefault(event.stream_id, []).append("1xx")
            elif isinstance(event, h2.events.TrailersReceived):
                self.trailers[event.stream_id] = list(event.headers)
                self.order.setdefault(event.stream_id, []).append("trailers")
                if event.stream_ended is not None:
                    self.streams[event.stream_id].ended = True
            else:
                if sid is not None:
                    kind = type(event).__name__
                    self.order.setdefault(sid, []).append(kind)
                rest.append(event)
        self._replay(rest)

    def _replay(self, events: list[object]) -> None:
        # Same bookkeeping as RawH2._process, for already-parsed events.
        for event in events:
            if isinstance(event, h2.events.ResponseReceived):
                self.streams[event.stream_id].headers = list(event.headers)  # type: ignore[arg-type]
            elif isinstance(event, h2.events.DataReceived):
                stream = self.streams[event.stream_id]
                stream.data += event.data
                stream.data_events += 1
                stream.received += event.flow_controlled_length
                if event.flow_controlled_length:
                    self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                self.streams[event.stream_id].ended = True
            elif isinstance(event, h2.events.StreamReset):
                if event.stream_id in self.streams:
                    self.streams[event.stream_id].reset = event.error_code


@pytest.fixture(params=["asyncio", "trio"])
def server(request: pytest.FixtureRequest, serve):  # type: ignore[no-untyped-def]
    return serve(APP, "--loop", request.param)


def test_extensions_advertised(server) -> None:
    with HintsClient(server.port) as client:
        names = json.loads(client.get("/extensions").body)
    assert "http.response.trailers" in names
    assert "http.response.early_hint" in names
    assert "http.response.pathsend" in names
    assert "http.response.push" in names  # h2 clients accept pushes unless they say otherwise


def test_trailers_end_the_stream(server) -> None:
    with HintsClient(server.port) as client:
        stream = client.get("/trailers")
        sid = stream.stream_id
        assert stream.status == 200
        assert stream.body == b"abcdef"
        assert stream.reset is None and stream.ended
        # Both trailer messages arrive in one HEADERS block that carries END_STREAM.
        assert client.trailers[sid] == [(b"x-checksum", b"123"), (b"x-more", b"2")]
        order = client.order[sid]
        assert order.index("trailers") > max(i for i, k in enumerate(order) if k == "DataReceived")
        # The last DATA frame did not end the stream: the trailers did.
        # h2 reports END_STREAM right after the frame that carried it.
        assert order[-2:] == ["trailers", "StreamEnded"] and order.count("StreamEnded") == 1


def test_trailers_after_empty_body(server) -> None:
    with HintsClient(server.port) as client:
        stream = client.get("/trailers-no-body")
        assert stream.status == 200 and stream.body == b""
        assert client.trailers[stream.stream_id] == [(b"grpc-status", b"0")]
        assert client.order[stream.stream_id][-2:] == ["trailers", "StreamEnded"]


def test_trailers_on_head_are_dropped(server) -> None:
    with HintsClient(server.port) as client:
        stream = client.get("/trailers", method="HEAD")
        assert stream.status == 200 and stream.ended and stream.reset is None
        assert stream.stream_id not in client.trailers


def test_announced_trailers_never_sent_resets(server) -> None:
    with HintsClient(server.port) as client:
        stream = client.get("/trailers-forgotten")
        assert stream.status == 200
        assert stream.reset == ErrorCodes.INTERNAL_ERROR
        assert stream.stream_id not in client.trailers
    server.wait_for_log("before finishing the response body")


def test_unannounced_trailers_are_an_app_error(server) -> None:
    with HintsClient(server.port) as client:
        stream = client.get("/trailers-unannounced")
        assert stream.reset == ErrorCodes.INTERNAL_ERROR
        assert stream.stream_id not in client.trailers
    server.wait_for_log("did not set trailers: True")


def test_early_hints_raw(server) -> None:
    with HintsClient(server.port) as client:
        stream = client.get("/hints")
        sid = stream.stream_id
        assert stream.status == 200 and stream.body == b"hinted"
        hints = client.informational[sid]
        assert [h[0] for h in hints] == [(b":status", b"103")] * 2
        assert hints[0][1:] == [(b"link", b"</style.css>; rel=preload; as=style")]
        assert hints[1][1:] == [
            (b"link", b"</app.js>; rel=preload; as=script"),
            (b"link", b"</font.woff2>; rel=preload; as=font"),
        ]
        order = client.order[sid]
        assert order[:3] == ["1xx", "1xx", "ResponseReceived"]


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
    with HintsClient(server.port) as client:
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
    with HintsClient(server.port) as client:
        stream = client.get(f"/pathsend?file={big_file}&length=300000")
        assert stream.header(b"content-length") == b"300000"
        assert [v for k, v in stream.headers if k == b"content-length"] == [b"300000"]
        assert len(stream.body) == 300_000


def test_pathsend_head_sends_no_body(server, big_file: Path) -> None:
    with HintsClient(server.port) as client:
        stream = client.get(f"/pathsend?file={big_file}", method="HEAD")
        assert stream.status == 200 and stream.body == b""
        assert stream.header(b"content-length") == b"300000"


def test_pathsend_missing_file_is_500(server, tmp_path: Path) -> None:
    with HintsClient(server.port) as client:
        stream = client.get(f"/pathsend?file={tmp_path / 'nope'}")
        assert stream.status == 500
    server.wait_for_log("cannot open")


def test_pathsend_wrong_length_is_an_error(server, big_file: Path) -> None:
    with HintsClient(server.port) as client:
        stream = client.get(f"/pathsend?file={big_file}&length=10")
        assert stream.reset == ErrorCodes.INTERNAL_ERROR or stream.status == 500
    server.wait_for_log("longer than its content-length")
