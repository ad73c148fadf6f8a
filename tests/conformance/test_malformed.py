"""RFC 9113 §8.1-8.3: malformed requests are stream errors (RST_STREAM PROTOCOL_ERROR)."""

from __future__ import annotations

import pytest

from tests.conformance.frames import (
    PROTOCOL_ERROR,
    Headers,
    HeadersFrame,
    Peer,
    RstStreamFrame,
    data_frame,
    headers_frame,
)
from tests.conftest import SERVER_CODEC

H2C_ONLY = ["h2c"]

M, S, A, P = (":method", "GET"), (":scheme", "http"), (":authority", "localhost"), (":path", "/hello")

MALFORMED: dict[str, Headers] = {
    "missing-method": [S, A, P],
    "missing-scheme": [M, A, P],
    "missing-path": [M, S, A],
    "duplicate-path": [M, S, A, P, P],
    "duplicate-method": [M, M, S, A, P],
    "unknown-pseudo": [M, S, A, P, (":foo", "bar")],
    "pseudo-after-regular": [M, S, A, ("x-a", "1"), P],
    "empty-path": [M, S, A, (":path", "")],
    "status-in-request": [M, S, A, P, (":status", "200")],
    "uppercase-name": [M, S, A, P, ("X-Upper", "1")],
    "connection-header": [M, S, A, P, ("connection", "keep-alive")],
    "keep-alive-header": [M, S, A, P, ("keep-alive", "timeout=5")],
    "transfer-encoding": [M, S, A, P, ("transfer-encoding", "chunked")],
    "upgrade-header": [M, S, A, P, ("upgrade", "websocket")],
    "te-gzip": [M, S, A, P, ("te", "gzip")],
    "host-differs-from-authority": [M, S, A, P, ("host", "example.com")],
    "protocol-without-connect": [M, S, A, P, (":protocol", "websocket")],
    "connect-with-path": [(":method", "CONNECT"), A, P],
    "newline-in-value": [M, S, A, P, ("x-a", "1\r\nx-b: 2")],
    "space-around-value": [M, S, A, P, ("x-a", " 1")],
    "colon-in-name": [M, S, A, P, ("x:a", "1")],
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_request_is_stream_error(peer: Peer, name: str) -> None:
    sid = peer.new_stream_id()
    peer.send(headers_frame(sid, peer.block(MALFORMED[name])))
    peer.expect_rst(sid, PROTOCOL_ERROR)
    peer.expect_alive()


def test_request_without_authority_or_host_is_served_or_refused(peer: Peer) -> None:
    # RFC 9113 §8.3.1: a request whose scheme has a mandatory authority (http, https) MUST carry
    # :authority or Host. The h2 codec serves one without (HAProxy's HTTP/2 health check sends
    # neither); libnghttp2 (--codec ngh2) refuses it as malformed, as the RFC lets it.
    sid = peer.new_stream_id()
    peer.send(headers_frame(sid, peer.block([M, S, P])))
    frame = peer.wait_for(lambda f: f.stream_id == sid and isinstance(f, (HeadersFrame, RstStreamFrame)))
    if isinstance(frame, RstStreamFrame):
        assert frame.error_code == PROTOCOL_ERROR and SERVER_CODEC == "ngh2"
        peer.expect_alive()
    else:
        assert frame.decoded[b":status"] == b"200"  # type: ignore[attr-defined]


def test_te_trailers_allowed(peer: Peer) -> None:
    sid = peer.new_stream_id()
    peer.send(headers_frame(sid, peer.block([M, S, A, P, ("te", "trailers")])))
    headers, _ = peer.expect_response(sid)
    assert headers[b":status"] == b"200"


def test_content_length_more_than_data(peer: Peer) -> None:
    sid = peer.new_stream_id()
    peer.send(
        headers_frame(
            sid,
            peer.block([(":method", "POST"), S, A, (":path", "/wait-body?key=cl1"), ("content-length", "10")]),
            end_stream=False,
        )
    )
    peer.send(data_frame(sid, b"12345", end_stream=True))
    # §8.1.1: a stream error. h2gate counts the DATA itself (h2 would end the connection).
    peer.expect_rst(sid, PROTOCOL_ERROR)
    peer.expect_alive()


def test_content_length_less_than_data(peer: Peer) -> None:
    sid = peer.new_stream_id()
    peer.send(
        headers_frame(
            sid,
            peer.block([(":method", "POST"), S, A, (":path", "/wait-body?key=cl2"), ("content-length", "2")]),
            end_stream=False,
        )
    )
    peer.send(data_frame(sid, b"12345", end_stream=True))
    # §8.1.1: a stream error. h2gate counts the DATA itself (h2 would end the connection).
    peer.expect_rst(sid, PROTOCOL_ERROR)
    peer.expect_alive()


@pytest.mark.parametrize("transport", H2C_ONLY)
@pytest.mark.parametrize("length", [3, 7])
def test_content_length_mismatch_in_one_read(peer: Peer, length: int) -> None:
    # HEADERS and DATA reach the server together: h2 sees the DATA before h2gate sees the request.
    sid = peer.new_stream_id()
    post = [(":method", "POST"), S, A, (":path", "/wait-body?key=cl-one"), ("content-length", str(length))]
    peer.send(headers_frame(sid, peer.block(post), end_stream=False), data_frame(sid, b"12345", end_stream=True))
    peer.expect_rst(sid, PROTOCOL_ERROR)
    peer.expect_alive()


def test_content_length_matching_split_data(peer: Peer) -> None:
    sid = peer.new_stream_id()
    post = [(":method", "POST"), S, A, (":path", "/wait-body?key=cl-ok"), ("content-length", "5")]
    peer.send(headers_frame(sid, peer.block(post), end_stream=False), data_frame(sid, b"12"))
    peer.send(data_frame(sid, b"345", end_stream=True))
    headers, body = peer.expect_response(sid)
    assert headers[b":status"] == b"200" and body == b"5"


def test_pseudo_header_in_trailers(peer: Peer) -> None:
    sid = peer.new_stream_id()
    post = [(":method", "POST"), S, A, (":path", "/wait-body?key=trailers")]
    peer.send(headers_frame(sid, peer.block(post), end_stream=False), data_frame(sid, b"abc"))
    peer.send(headers_frame(sid, peer.block([(":status", "200")])))
    peer.expect_rst(sid, PROTOCOL_ERROR)
    peer.expect_alive()


def test_valid_trailers_accepted(peer: Peer) -> None:
    sid = peer.new_stream_id()
    post = [(":method", "POST"), S, A, (":path", "/wait-body?key=ok-trailers"), ("te", "trailers")]
    peer.send(headers_frame(sid, peer.block(post), end_stream=False), data_frame(sid, b"abc"))
    peer.send(headers_frame(sid, peer.block([("x-checksum", "1")])))
    headers, body = peer.expect_response(sid)
    assert headers[b":status"] == b"200" and body == b"3"


@pytest.mark.parametrize("transport", H2C_ONLY)
def test_malformed_request_leaves_other_streams_alone(peer: Peer) -> None:
    slow = peer.request("/sleep?key=neighbour&seconds=0.3")
    bad = peer.new_stream_id()
    peer.send(headers_frame(bad, peer.block(MALFORMED["uppercase-name"])))
    peer.expect_rst(bad, PROTOCOL_ERROR)
    headers, body = peer.expect_response(slow)
    assert headers[b":status"] == b"200" and body == b"slept"
    headers, _ = peer.expect_response(peer.request())
    assert headers[b":status"] == b"200"


def test_content_length_without_body(peer: Peer) -> None:
    # h2 compares content-length with DATA frames only; h2gate.http.validate catches a request whose
    # HEADERS ends the stream although content-length promised a body.
    sid = peer.new_stream_id()
    block = peer.block([(":method", "POST"), S, A, (":path", "/wait-body?key=cl0"), ("content-length", "5")])
    peer.send(headers_frame(sid, block, end_stream=True))
    peer.expect_rst(sid, PROTOCOL_ERROR)
    peer.expect_alive()


@pytest.mark.parametrize("transport", H2C_ONLY)
@pytest.mark.parametrize("length", ["abc", "-1", "1, 2"])
def test_invalid_content_length(peer: Peer, length: str) -> None:
    sid = peer.new_stream_id()
    block = peer.block([(":method", "POST"), S, A, (":path", "/wait-body?key=cl3"), ("content-length", length)])
    peer.send(headers_frame(sid, block, end_stream=False))
    # Malformed, so a stream error by §8.1.1 (h2's own check, a connection error, is off).
    peer.expect_rst(sid, PROTOCOL_ERROR)
    peer.expect_alive()
