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

    def take_pseudo(self, name: bytes, value: bytes) -> bool:
        """Keep a request pseudo-header field; False for a name requests do not have."""
        if name == b":method":
            self.method = value
        elif name == b":path":
            self.target = value
        elif name == b":scheme":
            self.scheme = value
        elif name == b":authority":
            self.authority = value
        elif name == b":protocol":
            self.protocol = value
        else:
            return False
        return True


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
