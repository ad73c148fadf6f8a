"""BlockEncoder: blocks a real HPACK decoder reads back exactly, with both tables kept in step."""

from __future__ import annotations

import random

import pytest
from hpack import Decoder, Encoder, HPACKDecodingError, OversizedHeaderListError

from h2gate.internals import hpack_reuse
from h2gate.internals.hpack_reuse import BlockDecoder, BlockEncoder

BLOCK = [
    (b":status", b"200"),
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", b"13"),
    (b"server", b"h2gate"),
    (b"date", b"Mon, 23 Nov 2026 10:00:00 GMT"),
]


def pair() -> tuple[Encoder, BlockEncoder, Decoder]:
    encoder = Encoder()
    return encoder, BlockEncoder(encoder), Decoder()


def decode(decoder: Decoder, block: bytes) -> list[tuple[bytes, bytes]]:
    return [(bytes(n), bytes(v)) for n, v in decoder.decode(block, raw=True)]


def in_step(encoder: Encoder, decoder: Decoder) -> bool:
    return list(encoder.header_table.dynamic_entries) == list(decoder.header_table.dynamic_entries)


def test_a_repeated_block_is_all_indexes_and_not_encoded_again(monkeypatch: pytest.MonkeyPatch) -> None:
    encoder, blocks, decoder = pair()
    first = blocks.encode(BLOCK)
    assert decode(decoder, first) == BLOCK and in_step(encoder, decoder)
    second = blocks.encode(BLOCK)  # the table changed while the first was encoded: encoded again
    assert decode(decoder, second) == BLOCK and in_step(encoder, decoder)
    calls: list[object] = []
    original = encoder.add
    monkeypatch.setattr(encoder, "add", lambda *a: calls.append(a) or original(*a))
    assert blocks.encode(BLOCK) == second
    assert calls == []
    assert decode(decoder, second) == BLOCK and in_step(encoder, decoder)
    # Indexed fields are one byte each; content-length is a 4-bit name index (28 = 15 + 13) and a literal.
    assert second[:1] == b"\x88"  # :status 200 is static entry 8
    assert b"\x0f\x0d" in second
    assert len(second) < len(first)


def test_content_length_and_friends_stay_out_of_the_table() -> None:
    encoder, blocks, decoder = pair()
    for length in range(50):
        block = [(b":status", b"200"), (b"content-length", str(length).encode()), (b"etag", b'"v%d"' % length)]
        assert decode(decoder, blocks.encode(block)) == block
    names = {name for name, _ in encoder.header_table.dynamic_entries}
    assert names.isdisjoint(hpack_reuse.NOT_INDEXED)
    assert in_step(encoder, decoder)


def test_a_name_outside_the_static_table_is_sent_as_a_literal_name() -> None:
    # Put one in the set for this test: every name there today is in the static table.
    encoder, blocks, decoder = pair()
    not_indexed = hpack_reuse.NOT_INDEXED | {b"x-request-id"}
    block = [(b":status", b"204"), (b"x-request-id", b"a1b2c3")]
    original = hpack_reuse.NOT_INDEXED
    hpack_reuse.NOT_INDEXED = not_indexed
    try:
        wire = blocks.encode(block)
    finally:
        hpack_reuse.NOT_INDEXED = original
    assert decode(decoder, wire) == block
    assert wire[1:2] == b"\x00"  # literal without indexing, new name
    assert not encoder.header_table.dynamic_entries


def test_other_users_of_the_encoder_invalidate_what_was_kept() -> None:
    # h2's send_headers (1xx, trailers) and extension frames encode with the same encoder.
    encoder, blocks, decoder = pair()
    assert decode(decoder, blocks.encode(BLOCK)) == BLOCK
    for i in range(40):
        other = encoder.encode([(b"x-trailer", b"value-%d" % i), (b"link", b"</s%d.css>; rel=preload" % i)])
        assert decode(decoder, other)
        assert decode(decoder, blocks.encode(BLOCK)) == BLOCK
        assert in_step(encoder, decoder)


def test_a_table_size_change_opens_the_next_block() -> None:
    encoder, blocks, decoder = pair()
    assert decode(decoder, blocks.encode(BLOCK)) == BLOCK
    encoder.header_table_size = 64  # as h2 does for the peer's SETTINGS_HEADER_TABLE_SIZE
    wire = blocks.encode(BLOCK)
    assert wire[0] & 0xE0 == 0x20  # a dynamic table size update (RFC 7541 §6.3)
    assert decode(decoder, wire) == BLOCK and in_step(encoder, decoder)
    assert decoder.header_table.maxsize == 64
    encoder.header_table_size = 0
    for _ in range(3):
        assert decode(decoder, blocks.encode(BLOCK)) == BLOCK
        assert not encoder.header_table.dynamic_entries and in_step(encoder, decoder)


def test_long_values_are_not_kept() -> None:
    _, blocks, decoder = pair()
    big = [(b":status", b"200"), (b"x-big", b"v" * 1000)]
    for _ in range(3):
        assert decode(decoder, blocks.encode(big)) == big
    assert (b"x-big", b"v" * 1000) not in blocks._fields
    assert (b":status", b"200") in blocks._fields


def test_what_is_kept_is_bounded() -> None:
    _, blocks, decoder = pair()
    for i in range(hpack_reuse.KEEP_AT_MOST_FIELDS * 3):
        block = [(b":status", b"200"), (b"content-length", str(i).encode())]
        assert decode(decoder, blocks.encode(block)) == block
    assert len(blocks._fields) == hpack_reuse.KEEP_AT_MOST_FIELDS


@pytest.mark.parametrize("seed", range(5))
def test_random_blocks_with_evictions_decode_exactly(seed: int) -> None:
    rng = random.Random(seed)
    encoder, blocks, decoder = pair()
    encoder.header_table_size = decoder.header_table_size = 256  # small: evictions all the time
    names = [b"content-type", b"cache-control", b"vary", b"x-a", b"x-b", b"content-length", b"set-cookie", b"date"]
    for _ in range(400):
        block = [(b":status", rng.choice([b"200", b"404", b"201", b"500", b"299"]))]
        for _ in range(rng.randrange(6)):
            block.append((rng.choice(names), b"v%d" % rng.randrange(12)))
        if rng.random() < 0.1:
            decode(decoder, encoder.encode([(b"x-other", b"%d" % rng.randrange(100))]))
        assert decode(decoder, blocks.encode(block)) == block
        assert in_step(encoder, decoder)


# Inbound: BlockDecoder against hpack's own decoder, fed the same bytes.

REQUEST = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"127.0.0.1"), (b":path", b"/")]


def decoders() -> tuple[Encoder, BlockDecoder, Decoder]:
    return Encoder(), BlockDecoder(), Decoder()


def raw(headers: object) -> list[tuple[bytes, bytes]]:
    return [(bytes(n), bytes(v)) for n, v in headers]  # type: ignore[attr-defined]


def test_a_repeated_request_block_is_decoded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    client, ours, _ = decoders()
    first = client.encode(REQUEST)  # inserts :authority: decoded, not kept
    assert raw(ours.decode(first, raw=True)) == REQUEST
    again = client.encode(REQUEST)  # all indexes now, the table stays as it is
    assert again != first
    assert raw(ours.decode(again, raw=True)) == REQUEST
    calls: list[bytes] = []
    original = Decoder.decode
    monkeypatch.setattr(
        Decoder, "decode", lambda self, data, raw=False: calls.append(data) or original(self, data, raw)
    )
    one, two = ours.decode(again, raw=True), ours.decode(again, raw=True)
    assert calls == []
    assert raw(one) == raw(two) == REQUEST
    assert one is not two  # a list of its own each time: h2 and the app may keep or change it
    assert ours.decode(first, raw=True)  # a different block is decoded
    assert calls == [first]


def test_a_table_change_drops_what_was_kept() -> None:
    client, ours, plain = decoders()
    client.header_table_size = ours.header_table_size = plain.header_table_size = 200
    blocks = [client.encode(REQUEST), client.encode(REQUEST)]
    for i in range(30):
        # Each of these inserts and, with a 200-byte table, evicts the request's entries.
        blocks.append(client.encode([*REQUEST[:3], (b":path", b"/%d" % i), (b"x-n", b"v" * 40)]))
        blocks.append(client.encode(REQUEST))
        blocks.append(client.encode(REQUEST))
    for block in blocks:
        assert raw(ours.decode(block, raw=True)) == raw(plain.decode(block, raw=True))
        assert list(ours.header_table.dynamic_entries) == list(plain.header_table.dynamic_entries)


@pytest.mark.parametrize("seed", range(5))
def test_random_request_streams_decode_as_hpack_does(seed: int) -> None:
    rng = random.Random(seed)
    client, ours, plain = decoders()
    client.header_table_size = ours.header_table_size = plain.header_table_size = rng.choice([0, 128, 512, 4096])
    paths = [b"/", b"/a", b"/b?x=1", b"/static/app.js"]
    for _ in range(300):
        headers = [*REQUEST[:3], (b":path", rng.choice(paths))]
        if rng.random() < 0.3:
            headers.append((b"x-trace", b"%d" % rng.randrange(5)))
        block = client.encode(headers)
        assert raw(ours.decode(block, raw=True)) == raw(plain.decode(block, raw=True)) == headers
        assert list(ours.header_table.dynamic_entries) == list(plain.header_table.dynamic_entries)


def test_a_lower_header_list_limit_applies_to_kept_blocks() -> None:
    client, ours, _ = decoders()
    ours.decode(client.encode(REQUEST), raw=True)
    again = client.encode(REQUEST)
    for _ in range(2):
        assert raw(ours.decode(again, raw=True)) == REQUEST
    assert again in ours._blocks
    ours.max_header_list_size = 100  # as h2 sets it from our SETTINGS_MAX_HEADER_LIST_SIZE
    with pytest.raises(OversizedHeaderListError):
        ours.decode(again, raw=True)


def test_a_bad_block_raises_every_time() -> None:
    _, ours, _ = decoders()
    bad = b"\xff\xff\xff\x0f"  # an index far beyond both tables
    for _ in range(2):
        with pytest.raises(HPACKDecodingError):
            ours.decode(bad, raw=True)
    assert not ours._blocks


def test_kept_blocks_are_bounded_in_number_and_size() -> None:
    client, ours, _ = decoders()
    long_path = [*REQUEST[:3], (b":path", b"/" + b"p" * 400)]
    for _ in range(3):
        block = client.encode([(n, v, True) for n, v in long_path])  # never indexed: the table stays empty
        assert raw(ours.decode(block, raw=True)) == long_path
    assert not ours._blocks
    for i in range(hpack_reuse.KEEP_AT_MOST_BLOCKS * 3):
        headers = [*REQUEST[:3], (b":path", b"/%d" % i, True)]
        ours.decode(client.encode(headers), raw=True)
    assert len(ours._blocks) == hpack_reuse.KEEP_AT_MOST_BLOCKS
