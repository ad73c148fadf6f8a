"""RFC 7541 (HPACK) errors as the server must report them: COMPRESSION_ERROR (RFC 9113 §4.3)."""

from __future__ import annotations

import pytest

from tests.conformance.frames import (
    COMPRESSION_ERROR,
    HEADER_TABLE_SIZE,
    SETTINGS,
    Peer,
    headers_frame,
    raw_frame,
    request_headers,
    settings_payload,
)

H2C_AND_TLS = ["h2c", "tls"]

#: ``:path`` as a literal field without indexing, name from static index 4 (RFC 7541 §6.2.2).
PATH_LITERAL = b"\x04"

BROKEN_BLOCKS = {
    # §6.1: index 0 is not used.
    "indexed-field-0": b"\x80",
    # §2.3.3: index 70 with an empty dynamic table (61 static entries).
    "index-out-of-range": b"\x82\xc6",
    # §6.3 / §4.2: size update to 5000 exceeds the SETTINGS_HEADER_TABLE_SIZE of 4096.
    "table-size-above-setting": b"\x3f\xe9\x26\x82",
    # §4.2: a size update must come at the beginning of the block.
    "table-size-update-not-first": b"\x82\x20",
    # §5.2: "/" (6 bits) followed by 10 bits of padding.
    "huffman-padding-over-7-bits": PATH_LITERAL + b"\x82\x63\xff",
    # §5.2: padding that is not the most significant bits of EOS.
    "huffman-padding-not-eos": PATH_LITERAL + b"\x81\x60",
    # §5.2: a string containing the EOS symbol (30 one bits).
    "huffman-eos-in-string": PATH_LITERAL + b"\x84\xff\xff\xff\xff",
    # §5.1: an integer far beyond any implementation limit.
    "integer-overflow": b"\xff" + b"\xff" * 10 + b"\x01",
    # §5.2: a string longer than the block.
    "string-past-end": PATH_LITERAL + b"\x0a/abc",
}


@pytest.mark.parametrize("name", list(BROKEN_BLOCKS))
def test_broken_header_block(peer: Peer, name: str) -> None:
    peer.send(headers_frame(peer.new_stream_id(), BROKEN_BLOCKS[name]))
    peer.expect_goaway(COMPRESSION_ERROR)


@pytest.mark.parametrize("transport", H2C_AND_TLS)
def test_table_size_update_at_start_accepted(peer: Peer) -> None:
    sid = peer.new_stream_id()
    peer.send(headers_frame(sid, b"\x20" + peer.block(request_headers())))
    headers, _ = peer.expect_response(sid)
    assert headers[b":status"] == b"200"


@pytest.mark.parametrize("transport", H2C_AND_TLS)
def test_dynamic_table_shared_across_requests(peer: Peer) -> None:
    extra = [("x-long-header", "v" * 200)]
    first = peer.request(extra=extra)
    peer.expect_response(first)
    block = peer.block(request_headers(extra=extra))
    assert len(block) < 20  # everything came from the dynamic table
    second = peer.new_stream_id()
    peer.send(headers_frame(second, block))
    headers, _ = peer.expect_response(second)
    assert headers[b":status"] == b"200"


@pytest.mark.parametrize("transport", H2C_AND_TLS)
def test_server_honours_our_header_table_size(peer: Peer) -> None:
    # With HEADER_TABLE_SIZE 0 the server's encoder must not index anything (RFC 7541 §4.2).
    peer.send(raw_frame(SETTINGS, 0, 0, settings_payload((HEADER_TABLE_SIZE, 0))))
    peer.decoder.max_allowed_table_size = 0
    for _ in range(2):
        headers, _ = peer.expect_response(peer.request())
        assert headers[b":status"] == b"200"
