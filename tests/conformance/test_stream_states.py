"""RFC 9113 §5.1 (stream states and identifiers) and §5.1.2 (concurrency)."""

from __future__ import annotations

import pytest

from tests.conformance.frames import (
    CANCEL,
    PROTOCOL_ERROR,
    REFUSED_STREAM,
    STREAM_CLOSED,
    DataFrame,
    HeadersFrame,
    Peer,
    data_frame,
    headers_frame,
    request_headers,
    rst_frame,
    window_update,
)

H2C_ONLY = ["h2c"]
H2C_AND_TLS = ["h2c", "tls"]


def _open_sleeper(peer: Peer, key: str, seconds: float = 3, *, end_stream: bool = True) -> int:
    return peer.request(f"/sleep?key={key}&seconds={seconds}", end_stream=end_stream)


def test_data_on_idle_stream(peer: Peer) -> None:
    peer.send(data_frame(peer.new_stream_id(), b"x", end_stream=True))
    peer.expect_goaway(PROTOCOL_ERROR)


def test_window_update_on_idle_stream(peer: Peer) -> None:
    peer.send(window_update(peer.new_stream_id(), 100))
    peer.expect_goaway(PROTOCOL_ERROR)


def test_headers_on_half_closed_remote(peer: Peer) -> None:
    sid = _open_sleeper(peer, "hc-headers")
    # The request ended (END_STREAM): more HEADERS on it is STREAM_CLOSED (§5.1), a stream error
    # (h2) or, as §5.4.1 allows, a connection error (libnghttp2).
    peer.send(headers_frame(sid, peer.block([("x-trailer", "1")])))
    if not peer.expect_stream_error(sid, STREAM_CLOSED):
        peer.expect_alive()


def test_data_on_half_closed_remote(peer: Peer) -> None:
    sid = _open_sleeper(peer, "hc-data")
    peer.send(data_frame(sid, b"late", end_stream=True))
    if not peer.expect_stream_error(sid, STREAM_CLOSED):  # as in the test above
        peer.expect_alive()


def test_window_update_on_half_closed_remote_allowed(peer: Peer) -> None:
    sid = _open_sleeper(peer, "hc-wu", 0.2)
    peer.send(window_update(sid, 1000))
    headers, body = peer.expect_response(sid)
    assert headers[b":status"] == b"200" and body == b"slept"


@pytest.mark.parametrize("transport", H2C_AND_TLS)
def test_data_on_closed_stream(peer: Peer) -> None:
    sid = peer.request()
    peer.expect_response(sid)
    peer.send(data_frame(sid, b"late", end_stream=True))
    # RFC 9113 §5.1 ("closed"): frames after END_STREAM both ways are a connection error
    # STREAM_CLOSED (h2 alone answers RST_STREAM; h2gate.internals.h2conn makes it the connection error).
    peer.expect_goaway(STREAM_CLOSED)


def test_data_after_client_reset(peer: Peer) -> None:
    sid = _open_sleeper(peer, "rst-data", end_stream=False)
    peer.send(rst_frame(sid, CANCEL))
    peer.send(data_frame(sid, b"late", end_stream=True))
    # §5.1: any frame but PRIORITY after RST_STREAM is a stream error STREAM_CLOSED.
    peer.expect_rst(sid, STREAM_CLOSED)
    peer.expect_alive()


def test_even_stream_id(peer: Peer) -> None:
    peer.send(headers_frame(2, peer.block(request_headers())))
    peer.expect_goaway(PROTOCOL_ERROR)


def test_decreasing_stream_id(peer: Peer) -> None:
    first = peer.new_stream_id()
    higher = peer.new_stream_id() + 2
    peer.send(headers_frame(higher, peer.block(request_headers())))
    peer.send(headers_frame(first, peer.block(request_headers())))
    peer.expect_goaway(PROTOCOL_ERROR)


@pytest.mark.parametrize("transport", H2C_AND_TLS)
def test_reused_stream_id(peer: Peer) -> None:
    sid = peer.request()
    peer.expect_response(sid)
    peer.send(headers_frame(sid, peer.block(request_headers())))
    # A reused id is both "unexpected" (§5.1.1: PROTOCOL_ERROR) and a frame after END_STREAM on a
    # closed stream (§5.1: connection error STREAM_CLOSED); h2 picks the latter. Pinned.
    peer.expect_goaway(STREAM_CLOSED)


def test_stream_zero_headers(peer: Peer) -> None:
    peer.send(headers_frame(0, peer.block(request_headers())))
    peer.expect_goaway(PROTOCOL_ERROR)


@pytest.mark.parametrize("transport", H2C_AND_TLS)
def test_over_max_concurrent_streams(peer: Peer) -> None:
    assert peer.server_settings[3] == 10  # the advertised value stays the configured one
    sids = [_open_sleeper(peer, f"mcs{i}", 1) for i in range(10)]
    over = peer.request()
    # §5.1.2 allows PROTOCOL_ERROR or REFUSED_STREAM; h2gate refuses just that stream, which a
    # client may retry (h2 is given headroom so it still decodes the HEADERS: HPACK stays in sync).
    peer.expect_rst(over, REFUSED_STREAM)
    peer.expect_alive()
    # The accepted streams all complete (responses arrive in any order: look at every frame seen).
    peer.wait_for(
        lambda f: (
            {x.stream_id for x in peer.frames if isinstance(x, DataFrame) and "END_STREAM" in x.flags} >= set(sids)
        )
    )
    headers, body = peer.expect_response(peer.request())  # room again once the sleepers are done
    assert headers[b":status"] == b"200" and body == b"hello"


def test_headers_frames_only_on_own_streams(peer: Peer) -> None:
    sid = peer.request()
    peer.expect_response(sid)
    assert all(f.stream_id in (0, 1, sid) for f in peer.frames if isinstance(f, HeadersFrame))


@pytest.mark.parametrize("transport", ["upgrade"])
def test_upgraded_stream_one_is_closed_to_the_client(peer: Peer) -> None:
    # RFC 9113 §3.1 / RFC 7540 §3.2: the upgrade request is stream 1, half-closed (local) for the
    # client from the start; once answered it is closed, and client streams continue at 3.
    assert peer.new_stream_id() == 3
    peer.send(data_frame(1, b"late", end_stream=True))
    # §6.1: a stream error STREAM_CLOSED (h2), or the connection error §5.1 allows once both
    # sides have ended it (the ngh2 codec, as both codecs answer on other streams).
    if not peer.expect_stream_error(1, STREAM_CLOSED):
        peer.expect_alive()
