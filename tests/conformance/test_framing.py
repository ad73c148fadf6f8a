"""RFC 9113 §4.1-4.3 (frame format, size, header compression) and §5.5 (extensions)."""

from __future__ import annotations

import pytest

from tests.conformance.frames import (
    COMPRESSION_ERROR,
    CONTINUATION,
    END_HEADERS,
    END_STREAM,
    FRAME_SIZE_ERROR,
    HEADERS,
    PING,
    PROTOCOL_ERROR,
    Peer,
    PingFrame,
    continuation_frame,
    data_frame,
    headers_frame,
    raw_frame,
    request_headers,
)

H2C_ONLY = ["h2c"]


def test_unknown_frame_type_ignored(peer: Peer) -> None:
    peer.send(raw_frame(0xFA, 0xFF, 0, b"whatever"))
    sid = peer.new_stream_id()
    block = peer.block(request_headers())
    peer.send(headers_frame(sid, block, end_stream=False))
    # An unknown type in the middle of a stream's life is ignored too (§5.5).
    peer.send(raw_frame(0xFB, 0, sid, b"x" * 10), data_frame(sid, b"", end_stream=True))
    headers, body = peer.expect_response(sid)
    assert headers[b":status"] == b"200" and body == b"hello"
    peer.expect_alive()


def test_unknown_flags_ignored(peer: Peer) -> None:
    # PING with every undefined flag bit set (not ACK) is still answered.
    peer.send(raw_frame(PING, 0xFE, 0, b"flagsflg"))
    ack = peer.wait_for(lambda f: isinstance(f, PingFrame) and "ACK" in f.flags)
    assert ack.opaque_data == b"flagsflg"
    sid = peer.new_stream_id()
    flags = END_STREAM | END_HEADERS | 0x02 | 0x10 | 0x40 | 0x80
    peer.send(raw_frame(HEADERS, flags, sid, peer.block(request_headers())))
    headers, _ = peer.expect_response(sid)
    assert headers[b":status"] == b"200"


def test_reserved_bit_in_stream_id_ignored(peer: Peer) -> None:
    # §4.1: the reserved bit MUST be ignored when receiving.
    sid = peer.new_stream_id()
    peer.send(raw_frame(HEADERS, END_STREAM | END_HEADERS, sid | 0x80000000, peer.block(request_headers())))
    headers, _ = peer.expect_response(sid)
    assert headers[b":status"] == b"200"


def test_frame_larger_than_max_frame_size(peer: Peer) -> None:
    sid = peer.request(end_stream=False, path="/wait-body?key=fsize")
    peer.send(data_frame(sid, b"x" * (16384 + 1)))
    # §4.2 allows a stream error for DATA; h2 (and so h2gate) makes it a connection error, also allowed.
    peer.expect_goaway(FRAME_SIZE_ERROR)


def test_oversized_frame_header_on_stream_zero(peer: Peer) -> None:
    peer.send(raw_frame(PING, 0, 0, b"\0" * 16385))
    peer.expect_goaway(FRAME_SIZE_ERROR)


@pytest.mark.parametrize("transport", H2C_ONLY)
def test_headers_split_over_continuation(peer: Peer) -> None:
    sid = peer.new_stream_id()
    block = peer.block(request_headers(extra=[("x-filler", "y" * 100)]))
    peer.send(
        headers_frame(sid, block[:10], end_headers=False),
        continuation_frame(sid, block[10:50], end_headers=False),
        continuation_frame(sid, block[50:]),
    )
    headers, _ = peer.expect_response(sid)
    assert headers[b":status"] == b"200"


def test_frame_interleaved_in_header_block(peer: Peer) -> None:
    sid = peer.new_stream_id()
    block = peer.block(request_headers())
    peer.send(headers_frame(sid, block[:5], end_headers=False), PingFrame(0, opaque_data=b"inbetwen"))
    peer.expect_goaway(PROTOCOL_ERROR)


@pytest.mark.parametrize("transport", H2C_ONLY)
def test_data_interleaved_in_header_block(peer: Peer) -> None:
    sid = peer.new_stream_id()
    block = peer.block(request_headers())
    peer.send(headers_frame(sid, block[:5], end_headers=False, end_stream=False), data_frame(sid, b"x"))
    peer.expect_goaway(PROTOCOL_ERROR)


def test_continuation_without_headers(peer: Peer) -> None:
    sid = peer.new_stream_id()
    peer.send(continuation_frame(sid, peer.block(request_headers())))
    peer.expect_goaway(PROTOCOL_ERROR)


@pytest.mark.parametrize("transport", H2C_ONLY)
def test_continuation_after_end_headers(peer: Peer) -> None:
    sid = peer.new_stream_id()
    peer.send(headers_frame(sid, peer.block(request_headers()), end_stream=False))
    peer.send(continuation_frame(sid, b""))
    peer.expect_goaway(PROTOCOL_ERROR)


def test_continuation_on_other_stream(peer: Peer) -> None:
    sid = peer.new_stream_id()
    block = peer.block(request_headers())
    peer.send(headers_frame(sid, block[:5], end_headers=False), continuation_frame(sid + 2, block[5:]))
    peer.expect_goaway(PROTOCOL_ERROR)


@pytest.mark.parametrize("transport", H2C_ONLY)
def test_continuation_on_stream_zero(peer: Peer) -> None:
    sid = peer.new_stream_id()
    block = peer.block(request_headers())
    peer.send(headers_frame(sid, block[:5], end_headers=False), raw_frame(CONTINUATION, END_HEADERS, 0, block[5:]))
    peer.expect_goaway(PROTOCOL_ERROR)


def test_undecodable_header_block(peer: Peer) -> None:
    # §4.3: a header block that cannot be decoded is a connection error COMPRESSION_ERROR.
    sid = peer.new_stream_id()
    peer.send(headers_frame(sid, b"\x80"))  # indexed field 0 (RFC 7541 §6.1)
    peer.expect_goaway(COMPRESSION_ERROR)
