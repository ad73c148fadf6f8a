"""A request's head as HTTP/2 delivers it: pseudo-header fields pulled out once, regular fields in order."""

from __future__ import annotations

from typing import Final

Headers = list[tuple[bytes, bytes]]

#: :meth:`RequestHead.take_pseudo`'s answer per pseudo-header: bits, so a request's set of them is one int.
METHOD: Final = 1
PATH: Final = 2
SCHEME: Final = 4
AUTHORITY: Final = 8
PROTOCOL: Final = 16


class RequestHead:
    """A request's pseudo-header fields pulled out once, and its regular fields in order.

    A plain class, not a dataclass: compiled, a dataclass keeps the interpreted
    ``__init__`` the decorator writes (about 2,700 instructions per request under
    callgrind); this one is a native class whose attributes are struct fields.
    """

    def __init__(
        self,
        method: bytes = b"",
        scheme: bytes = b"",
        authority: bytes = b"",
        target: bytes = b"",  # :path, query included
        protocol: bytes | None = None,  # :protocol of an extended CONNECT (RFC 8441)
        fields: Headers | None = None,
    ) -> None:
        self.method = method
        self.scheme = scheme
        self.authority = authority
        self.target = target
        self.protocol = protocol
        self.fields: Headers = [] if fields is None else fields

    def __repr__(self) -> str:
        return (
            f"RequestHead(method={self.method!r}, scheme={self.scheme!r}, authority={self.authority!r}, "
            f"target={self.target!r}, protocol={self.protocol!r}, fields={self.fields!r})"
        )

    def take_pseudo(self, name: bytes, value: bytes) -> int:
        """Keep a request pseudo-header field and say which it was (its bit); 0 for a name requests do not have."""
        if name == b":method":
            self.method = value
            return METHOD
        if name == b":path":
            self.target = value
            return PATH
        if name == b":scheme":
            self.scheme = value
            return SCHEME
        if name == b":authority":
            self.authority = value
            return AUTHORITY
        if name == b":protocol":
            self.protocol = value
            return PROTOCOL
        return 0


def split_head(headers: Headers) -> RequestHead:
    """Split a head already checked (a promised request, an HTTP/1.1 upgrade): unknown pseudo-fields are dropped."""
    head = RequestHead()
    fields = head.fields
    for name, value in headers:
        if name[:1] != b":":
            fields.append((name, value))
        else:
            head.take_pseudo(name, value)
    return head
