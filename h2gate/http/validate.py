"""Is a request's header list well formed (RFC 9113 §8.2-8.3, RFC 8441 §4)?

Theory of operation: h2 can validate inbound headers itself, but it reports a
malformed request as a connection error (GOAWAY), while RFC 9113 §8.1.1 makes
it a stream error: RST_STREAM PROTOCOL_ERROR for that request, the other
streams unharmed. So the connection runs h2 with ``validate_inbound_headers``
off and calls :func:`parse_request` / :func:`trailer_problem` on every
header block; a string answer (the reason, for the log) means "reset this
stream". The rules are h2's own, checked in one pass that also splits the
request's pseudo-headers from its fields (:class:`~h2gate.http.head.RequestHead`),
so nothing later walks the header list again.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from h2gate.http.head import AUTHORITY, METHOD, PATH, PROTOCOL, SCHEME, RequestHead

Headers = Iterable[tuple[bytes, bytes]]

#: Connection-specific fields, which HTTP/2 forbids (RFC 9113 §8.2.2).
CONNECTION_SPECIFIC: Final = frozenset(
    {b"connection", b"proxy-connection", b"keep-alive", b"transfer-encoding", b"upgrade"}
)
REQUEST_PSEUDO: Final = frozenset({b":method", b":scheme", b":authority", b":path", b":protocol"})
#: A whole valid name: visible ASCII without uppercase, a colon only as a pseudo-header's first byte.
_NAME_OK: Final = re.compile(rb":?[\x21-\x39\x3b-\x40\x5b-\x7e]+").fullmatch


def has_bad_value_byte(value: bytes) -> bool:
    """Whether ``value`` holds a byte no field value may hold, in either direction (RFC 9113 §8.2.1).

    Three ``in`` tests of an *int* (each a ``memchr``): about 50 ns for a
    request's values joined, against 230 for a regular expression's character
    class. (``b"\\n" in value`` would cost about 140 ns each: CPython first tries
    the needle as an integer, and makes and clears a TypeError.)
    """
    return 10 in value or 13 in value or 0 in value


_WHITESPACE: Final = (0x20, 0x09)


def _field_problem(name: bytes, value: bytes) -> str | None:
    """The first §8.2.1 / §8.2.2 rule a regular or pseudo field breaks, or None."""
    if not name:
        return "empty field name"
    if _NAME_OK(name) is None:
        return f"invalid field name {name!r}"
    if has_bad_value_byte(value):
        return f"invalid character in the value of {name!r}"
    if value and (value[0] in _WHITESPACE or value[-1] in _WHITESPACE):
        return f"value of {name!r} starts or ends with whitespace"
    if name in CONNECTION_SPECIFIC:
        return f"connection-specific field {name!r}"
    if name == b"te" and value.lower() != b"trailers":
        return f"te: {value!r} (only 'trailers' is allowed)"
    return None


def request_problem(headers: Headers, *, ended: bool = False) -> str | None:
    """Why the request header list is malformed, or None if it is well formed (see :func:`parse_request`)."""
    parsed = parse_request(headers, ended=ended)
    return parsed if isinstance(parsed, str) else None


#: Names already found valid and neither connection-specific nor ``te`` (bounded; a client cannot grow it past this).
_GOOD_NAMES: Final[set[bytes]] = set()
_GOOD_NAMES_MAX: Final = 1024
_TE: Final = b"te"


def parse_request(headers: Headers, *, ended: bool = False) -> RequestHead | str:
    """The request's head split into pseudo-headers and regular fields, or why the header list is malformed.

    One pass over the fields does both (the core calls it once per request and
    the adapters read the result). ``ended`` says the HEADERS frame carried
    END_STREAM: a non-zero content-length is then a mismatch with the (empty)
    body (§8.1.1). content-length must be digits, and agree when repeated (RFC
    9110 §8.6); h2's own checks of it are off (h2gate.internals.h2conn).
    """
    head = RequestHead()
    fields = head.fields
    append = fields.append
    good = _GOOD_NAMES
    seen_pseudo = 0  # the pseudo-headers met so far, as RequestHead.take_pseudo's bits
    length: bytes | None = None
    regular_seen = False
    hosts: list[bytes] = []
    values: list[bytes] = []
    for name, value in headers:
        if name not in good:
            problem = _field_problem(name, value)
            if problem:
                return problem
            if name not in CONNECTION_SPECIFIC and name != _TE and len(good) < _GOOD_NAMES_MAX:
                good.add(name)
        elif value:
            if value[0] in _WHITESPACE or value[-1] in _WHITESPACE:
                return _field_problem(name, value) or "invalid field value"
            values.append(value)  # NUL, CR and LF are looked for in all of them at once, below
        if name[0] == 0x3A:  # b":"
            if regular_seen:
                return f"pseudo-header {name!r} after a regular field"
            bit = head.take_pseudo(name, value)
            if not bit:
                return f"pseudo-header {name!r} is not allowed in a request"
            if seen_pseudo & bit:
                return f"duplicate pseudo-header {name!r}"
            seen_pseudo |= bit
            continue
        regular_seen = True
        append((name, value))
        if name == b"host":
            hosts.append(value)
        elif name == b"content-length":
            if not value.isdigit():
                return f"invalid content-length {value.decode('latin-1')!r}"
            if length is not None and int(value) != int(length):
                return "conflicting content-length fields"
            length = value
            if ended and value.strip(b"0"):
                return f"content-length {value.decode('latin-1')!r} on a request without a body"
    if values and has_bad_value_byte(b"".join(values)):
        return next(p for name, value in headers if (p := _field_problem(name, value)))
    problem = _pseudo_problem(head, seen_pseudo, hosts)
    return head if problem is None else problem


def _pseudo_problem(head: RequestHead, pseudo: int, hosts: list[bytes]) -> str | None:
    """What the set of pseudo-headers (``pseudo``: RequestHead.take_pseudo's bits) breaks, or None."""
    method = head.method
    if not pseudo & METHOD:
        return "missing :method"
    if method == b"CONNECT" and not pseudo & PROTOCOL:
        # Plain CONNECT (§8.5): just the authority.
        if pseudo & (SCHEME | PATH):
            return "CONNECT with :scheme or :path"
    else:
        if pseudo & PROTOCOL and method != b"CONNECT":
            return ":protocol outside an extended CONNECT"
        if not pseudo & SCHEME:
            return "missing :scheme"
        if not pseudo & PATH:
            return "missing :path"
        if not head.target:
            return "empty :path"
    if len(hosts) > 1:
        return "more than one host field"
    # Neither :authority nor host is allowed: a client with no authority to convey sends
    # none (RFC 9113 §8.3.1), as HAProxy's HTTP/2 health check does.
    if hosts and pseudo & AUTHORITY and hosts[0] != head.authority:
        return "host and :authority differ"
    return None


def trailer_problem(headers: Headers) -> str | None:
    """Why a trailer section is malformed (pseudo-headers, bad fields), or None."""
    for name, value in headers:
        if name.startswith(b":"):
            return f"pseudo-header {name!r} in trailers"
        problem = _field_problem(name, value)
        if problem:
            return problem
    return None
