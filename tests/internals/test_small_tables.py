"""hpack tables kept in SmallEntries encode and decode exactly as hpack's own deque-backed tables."""

from __future__ import annotations

from hpack import Decoder, Encoder
from hypothesis import given
from hypothesis import strategies as st

from h2gate.internals.hpack_reuse import SmallEntries, use_small_entries

_FIELDS = st.lists(
    st.tuples(st.sampled_from([b"a", b"b", b"cookie", b"x-long-name"]), st.binary(min_size=0, max_size=300)),
    min_size=1,
    max_size=6,
)


@given(blocks=st.lists(_FIELDS, max_size=25), size=st.sampled_from([256, 1024, 4096]))
def test_small_entries_match_hpacks_deque(blocks: list[list[tuple[bytes, bytes]]], size: int) -> None:
    ours, theirs = Encoder(), Encoder()
    use_small_entries(ours.header_table)
    assert isinstance(ours.header_table.dynamic_entries, SmallEntries)
    ours.header_table_size = theirs.header_table_size = size  # evictions happen
    our_decoder, their_decoder = Decoder(), Decoder()
    use_small_entries(our_decoder.header_table)
    for block in blocks:
        encoded = ours.encode(block)
        assert encoded == theirs.encode(block)
        assert our_decoder.decode(encoded, raw=True) == their_decoder.decode(encoded, raw=True)
        assert list(ours.header_table.dynamic_entries) == list(theirs.header_table.dynamic_entries)
        assert list(our_decoder.header_table.dynamic_entries) == list(their_decoder.header_table.dynamic_entries)
