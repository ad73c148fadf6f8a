"""A request's head as HTTP/2 delivers it: pseudo-header fields pulled out once, regular fields in order."""

from __future__ import annotations

from dataclasses import dataclass, field

Headers = list[tuple[bytes, bytes]]


@dataclass(slots=True)
class RequestHead:
    """A request's pseudo-header fields pulled out once, and its regular fields in order."""

    method: bytes = b""
    scheme: bytes = b""
    authority: bytes = b""
    target: bytes = b""  # :path, query included
    protocol: bytes | None = None  # :protocol of an extended CONNECT (RFC 8441)
    fields: Headers = field(default_factory=list)


def split_head(headers: Headers) -> RequestHead:
    head = RequestHead()
    fields = head.fields
    for name, value in headers:
        if name[:1] != b":":
            fields.append((name, value))
        elif name == b":method":
            head.method = value
        elif name == b":path":
            head.target = value
        elif name == b":scheme":
            head.scheme = value
        elif name == b":authority":
            head.authority = value
        elif name == b":protocol":
            head.protocol = value
    return head
