"""Proxy headers: the client address, scheme and host a trusted reverse proxy reports.

Theory of operation: a proxy in front of h2gate opens its own connection, so
the TCP peer is the proxy. It says who the client was in ``Forwarded``
(RFC 7239) or, older, ``X-Forwarded-For`` / ``-Proto`` / ``-Host``. Any client
can send those headers too, so they count only when the TCP peer is in
``--forwarded-allow-ips``; otherwise the request is left exactly as it came.

Each proxy appends the address it received the request from, so the list is
read from the right: entries added by trusted proxies are skipped, and the
first untrusted one is the client (everything left of it could be forged by
that client). The scheme and host are taken from the same hop.

:meth:`ProxyHeaders.apply` runs once per exchange, before either adapter
builds its scope/environ, so ASGI, WSGI and the access log all see the same
answer: it returns a copy of the transport with ``peer`` and ``scheme``
replaced and rewrites the request's ``:scheme`` / ``:authority``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from h2gate.config.values import TrustedPeers
from h2gate.http.head import Headers, RequestHead

if TYPE_CHECKING:
    from h2gate.net.transport import Address, Transport

#: What a forwarded host may contain (RFC 3986 reg-name / IP literal, optional port).
_HOST_RE = re.compile(r"[A-Za-z0-9.\-_~!$&'()*+,;=%:\[\]]{1,255}")
_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
#: At most this many hops are looked at (a longer chain is cut from the left).
MAX_HOPS = 32


@dataclass(frozen=True, slots=True)
class Hop:
    """What one proxy recorded about the connection it received: the client's address, scheme, host."""

    client: str | None = None
    proto: str | None = None
    host: str | None = None


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def _split_quoted(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside double quotes (RFC 7230 quoted-string)."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == sep and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return parts


def parse_forwarded(values: list[str]) -> list[Hop]:
    """The hops of ``Forwarded`` header values (RFC 7239 §4), left to right; bad pairs are skipped."""
    hops = []
    for value in values:
        for element in _split_quoted(value, ","):
            params: dict[str, str] = {}
            for pair in _split_quoted(element, ";"):
                name, eq, raw = pair.partition("=")
                if eq:
                    params.setdefault(name.strip().lower(), _unquote(raw))
            if params:
                hops.append(Hop(params.get("for"), params.get("proto"), params.get("host")))
    return hops


def _list(values: list[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def parse_x_forwarded(fors: list[str], protos: list[str], hosts: list[str]) -> list[Hop]:
    """Hops from ``X-Forwarded-For`` with ``-Proto`` / ``-Host`` aligned to them (else the last one)."""
    clients, schemes, names = _list(fors), _list(protos), _list(hosts)

    def pick(items: list[str], index: int) -> str | None:
        if not items:
            return None
        return items[index] if len(items) == len(clients) else items[-1]

    if not clients:
        return [Hop(None, pick(schemes, 0), pick(names, 0))] if schemes or names else []
    return [Hop(c, pick(schemes, i), pick(names, i)) for i, c in enumerate(clients)]


def node_address(node: str) -> tuple[str, int] | None:
    """An RFC 7239 node (``1.2.3.4``, ``1.2.3.4:80``, ``[::1]:80``, bare ``::1``) → (ip, port); None otherwise.

    ``unknown`` and obfuscated names (``_hidden``) carry no address and give None.
    """
    node = node.strip()
    host, port = node, ""
    if node.startswith("["):
        host, _, rest = node[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif node.count(":") == 1:
        host, _, port = node.partition(":")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    number = int(port) if port.isdigit() and len(port) <= 5 and int(port) <= 65535 else 0
    return (str(ip), number)


def choose_hop(hops: list[Hop], trusted: TrustedPeers) -> Hop | None:
    """The hop that names the real client: the rightmost one whose address is not a trusted proxy."""
    hops = hops[-MAX_HOPS:]
    for hop in reversed(hops):
        address = node_address(hop.client) if hop.client else None
        if address is None or not trusted.trusts(address[0]):
            return hop
    return hops[0] if hops else None


def forwarded_hops(fields: Headers) -> list[Hop]:
    """The hops in a request's header fields: ``Forwarded`` if present, else ``X-Forwarded-*``."""
    found: dict[bytes, list[str]] = {}
    for name, value in fields:
        if name in (b"forwarded", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"):
            found.setdefault(name, []).append(value.decode("latin-1"))
    if not found:
        return []
    if b"forwarded" in found:
        return parse_forwarded(found[b"forwarded"])
    return parse_x_forwarded(
        found.get(b"x-forwarded-for", []), found.get(b"x-forwarded-proto", []), found.get(b"x-forwarded-host", [])
    )


class ProxyHeaders:
    """``--proxy-headers``: applies a trusted proxy's report to one request."""

    def __init__(self, allow_ips: list[str]) -> None:
        self.trusted = TrustedPeers(allow_ips)

    def apply(self, head: RequestHead, transport: Transport) -> Transport:
        """The transport as the app should see it; rewrites ``head``'s scheme and authority in place.

        Untrusted peers, and requests without proxy headers, get ``transport`` back unchanged.
        """
        peer = transport.peer
        host = peer[0] if peer is not None and peer[1] is not None else None
        if not self.trusted.trusts(host):
            return transport
        hop = choose_hop(forwarded_hops(head.fields), self.trusted)
        if hop is None:
            return transport
        client: Address = peer
        if hop.client:
            address = node_address(hop.client)
            if address is not None:
                client = address
        proto = _SCHEMES.get((hop.proto or "").strip().lower())
        scheme = proto or transport.scheme
        if proto:
            head.scheme = proto.encode()
        if hop.host and _HOST_RE.fullmatch(hop.host.strip()):
            head.authority = hop.host.strip().encode()
        if client == transport.peer and scheme == transport.scheme:
            return transport
        return dataclasses.replace(transport, peer=client, scheme=scheme)
