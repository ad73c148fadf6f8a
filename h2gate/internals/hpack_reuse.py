"""HPACK with h2's own encoder and decoder, minus the repeat work.

A server sends nearly the same header block again and again: ``:status``,
``content-type``, ``server`` and ``date`` (which changes once a second) are
usually in the dynamic table after the first response, and then each costs a
table search, a log call and an integer encoding per response. The encoding of
one field depends only on the field and the table's contents, so while the table
is unchanged the bytes of a field can be reused. Any insertion, eviction or
resize (including one caused by h2's own ``send_headers`` for 1xx and trailers,
or by extension frames) clears what was kept.

Fields whose values are nearly always new (``content-length``, ``etag`` and the
like) are sent as literals *without indexing* (RFC 7541 §6.2.2), as nghttp2
does: entering every response's length into the table would evict the entries
that do repeat, and would make every block change the table.

Inbound, a client repeating a request (polling, health checks, a load
generator, an API client calling one endpoint) sends byte-identical blocks that
leave the table as it was: the decoded list is then reused the same way, while
the table and the limits that decoding checks are unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hpack import Decoder, Encoder, HeaderTuple
from hpack.hpack import encode_integer
from hpack.table import HeaderTable

#: Response fields sent without indexing: their values rarely repeat, so a table entry would only evict one that does.
NOT_INDEXED = frozenset({b"content-length", b"etag", b"last-modified", b"location", b"set-cookie", b"age"})
#: The first static-table index per name (RFC 7541 Appendix A), for literals with an indexed name.
_STATIC_NAME: dict[bytes, int] = {}
for _index, (_name, _) in enumerate(HeaderTable.STATIC_TABLE, start=1):
    _STATIC_NAME.setdefault(_name, _index)
#: Fields longer than this (name plus value) are encoded each time and not kept.
KEEP_AT_MOST_BYTES = 256
#: Distinct encoded fields kept per connection (per table state).
KEEP_AT_MOST_FIELDS = 64
#: Inbound blocks longer than this are decoded each time and not kept.
KEEP_BLOCK_BYTES = 256
#: Distinct inbound blocks kept per connection (per table state).
KEEP_AT_MOST_BLOCKS = 8


class SmallEntries(list):  # type: ignore[type-arg]
    """A dynamic table's entries in a list, newest first: what hpack asks of its ``deque``, for less memory.

    hpack keeps each table's entries in a ``collections.deque``, which holds a
    block of 64 slots (over 600 bytes) from the start; an HTTP/2 connection has
    two tables that mostly hold a handful of entries. hpack only calls
    ``appendleft``, ``pop()`` (the oldest), ``clear``, ``len``, indexing and
    iteration, all of which a list does; ``appendleft`` moves at most the
    table's few dozen entries (4 KiB of table is at most 128 of them).
    """

    __slots__ = ()

    def appendleft(self, entry: tuple[bytes, bytes]) -> None:
        self.insert(0, entry)


def use_small_entries(table: Any) -> None:
    """Give a new, empty hpack table :class:`SmallEntries` (a table already in use keeps its own)."""
    if not table.dynamic_entries:
        table.dynamic_entries = SmallEntries()


class TableState:
    """A fingerprint of one dynamic table: its newest entry, its length and its size limit.

    hpack inserts every entry as a new tuple, so the newest entry's identity
    changes with any insertion (an equal value may come back, the object does
    not); evictions and resizes change the length or the limit.
    """

    __slots__ = ("_count", "_entries", "_head", "_maxsize", "_table")

    def __init__(self, table: Any) -> None:
        self._table = table
        self._entries: Sequence[tuple[bytes, bytes]] = table.dynamic_entries
        self.take()

    def take(self) -> None:
        entries = self._entries
        self._head = entries[0] if entries else None
        self._count = len(entries)
        self._maxsize = self._table.maxsize

    def moved(self) -> bool:
        """Whether the table differs from when :meth:`take` last looked."""
        entries = self._entries
        return (
            len(entries) != self._count
            or (entries[0] if entries else None) is not self._head
            or self._table.maxsize != self._maxsize
        )


class BlockEncoder:
    """Encodes response header blocks through one connection's ``hpack.Encoder``, reusing unchanged field encodings."""

    __slots__ = ("_encoder", "_fields", "_state")

    def __init__(self, encoder: Encoder) -> None:
        self._encoder = encoder
        use_small_entries(encoder.header_table)
        self._state = TableState(encoder.header_table)
        self._fields: dict[tuple[bytes, bytes], bytes] = {}

    def encode(self, headers: list[tuple[bytes, bytes]]) -> bytes:
        """The HPACK block for ``headers`` (lowercase bytes, pseudo-fields first); updates the table as h2 would."""
        fields, state = self._fields, self._state
        # A pending size update must open the block (RFC 7541 §4.2); hpack writes it for an empty list.
        out = [self._encoder.encode([])] if self._encoder.header_table.resized else []
        if state.moved():
            fields.clear()
            state.take()
        for field in headers:
            encoded = fields.get(field)
            if encoded is None:
                name, value = field
                if name in NOT_INDEXED:
                    encoded = _literal_not_indexed(self._encoder, name, value)
                else:
                    encoded = self._encoder.add(field, False, True)
                    if state.moved():  # it went into the table: next time it is an index
                        fields.clear()
                        state.take()
                        out.append(encoded)
                        continue
                if len(name) + len(value) <= KEEP_AT_MOST_BYTES and len(fields) < KEEP_AT_MOST_FIELDS:
                    fields[field] = encoded
            out.append(encoded)
        return b"".join(out)


class BlockDecoder(Decoder):
    """h2's decoder, reusing the decoded list of a byte-identical block that left the table as it was."""

    def __init__(self) -> None:
        super().__init__()
        use_small_entries(self.header_table)
        self._state = TableState(self.header_table)
        self._limits = (self.max_header_list_size, self.max_allowed_table_size)
        self._blocks: dict[bytes, tuple[HeaderTuple, ...]] = {}

    def decode(self, data: bytes, raw: bool = False) -> Any:
        if not raw or type(data) is not bytes or len(data) > KEEP_BLOCK_BYTES:
            return super().decode(data, raw)
        blocks, state = self._blocks, self._state
        limits = (self.max_header_list_size, self.max_allowed_table_size)
        if state.moved() or limits != self._limits:
            blocks.clear()
            state.take()
            self._limits = limits
        else:
            kept = blocks.get(data)
            if kept is not None:
                return list(kept)
        headers = super().decode(data, raw)  # raises for a bad block: nothing is kept
        if not state.moved() and len(blocks) < KEEP_AT_MOST_BLOCKS:
            blocks[data] = tuple(headers)
        return headers


def _literal_not_indexed(encoder: Encoder, name: bytes, value: bytes) -> bytes:
    """RFC 7541 §6.2.2: a 4-bit name index (or a literal name) and the value, Huffman-coded when that is shorter."""
    index = _STATIC_NAME.get(name)
    if index is None:
        head = b"\x00" + _string(encoder, name)
    else:
        head = bytes(encode_integer(index, 4))  # the pattern's top four bits are 0000
    return head + _string(encoder, value)


def _string(encoder: Encoder, raw: bytes) -> bytes:
    """An HPACK string literal (RFC 7541 §5.2)."""
    coded = encoder.huffman_coder.encode(raw)
    if len(coded) < len(raw):
        length = encode_integer(len(coded), 7)
        length[0] |= 0x80
        return bytes(length) + coded
    return bytes(encode_integer(len(raw), 7)) + raw
