"""Value types of options that need more than a type check: parsed once while the config is read.

They live here, below everything that uses them, so reading a config never
imports the server: :class:`TrustedPeers` (``--forwarded-allow-ips``, used by
:mod:`h2gate.http.forwarded` and the PROXY protocol) and the syntax of
``--access-log-format`` (rendered by :mod:`h2gate.observe.accesslog`).
"""

from __future__ import annotations

import ipaddress
import re

from h2gate.errors import ConfigError

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedPeers:
    """The ``--forwarded-allow-ips`` set: addresses, CIDR networks, ``*`` (everyone), ``unix`` (unix sockets)."""

    def __init__(self, spec: list[str]) -> None:
        """Raises ConfigError naming the entry that is neither an address nor a network."""
        self.everyone = False
        self.unix = False
        self.networks: list[_Network] = []
        for entry in (part.strip() for item in spec for part in item.split(",")):
            if not entry:
                continue
            if entry == "*":
                self.everyone = True
            elif entry == "unix":
                self.unix = True
            else:
                try:
                    self.networks.append(ipaddress.ip_network(entry, strict=False))
                except ValueError:
                    raise ConfigError(
                        f"--forwarded-allow-ips: {entry!r} is not an IP address, a CIDR network, * or unix"
                    ) from None

    def trusts(self, host: str | None) -> bool:
        """Whether ``host`` (an IP address text, None for a unix socket peer) is a trusted proxy."""
        if self.everyone:
            return True
        if host is None:
            return self.unix
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr in net for net in self.networks)


#: The access-log atoms, ``%(name)s``; ``%({header}i)s`` and ``%({header}o)s`` name request and response headers.
ATOM_NAMES = frozenset(
    {"h", "l", "u", "t", "r", "m", "U", "q", "H", "s", "B", "b", "f", "a", "T", "D", "M", "L", "p"}
    | {"peer", "status", "stream", "alpn", "scheme", "tls"}
)
_TOKEN = re.compile(r"%\((?P<name>[^()]*)\)s|%%|%")
_HEADER_ATOM = re.compile(r"\{(?P<header>[!#$%&'*+\-.^_`|~0-9A-Za-z]+)\}(?P<side>[io])")
#: One piece of a format: literal text, an atom name, or a header atom as (lowercase name, "i" or "o").
Token = str | tuple[str] | tuple[bytes, str]


def format_tokens(fmt: str) -> list[Token]:
    """``--access-log-format`` cut into literal text (str), atoms ((name,)) and header atoms ((name, side)).

    Raises ConfigError naming the first piece that is not an atom.
    """
    out: list[Token] = []
    pos = 0
    for match in _TOKEN.finditer(fmt):
        if match.start() > pos:
            out.append(fmt[pos : match.start()])
        pos = match.end()
        if match.group(0) == "%%":
            out.append("%")
            continue
        name = match.group("name")
        if name is None:
            where = fmt[match.start() : match.start() + 8]
            raise ConfigError(f"--access-log-format: {where!r} is not an atom (write %(name)s, or %% for %)")
        header = _HEADER_ATOM.fullmatch(name)
        if header is not None:
            out.append((header.group("header").lower().encode("ascii"), header.group("side")))
        elif name in ATOM_NAMES:
            out.append((name,))
        else:
            raise ConfigError(
                f"--access-log-format: unknown atom %({name})s (the docs' Operations page lists them under Logging)"
            )
    if pos < len(fmt):
        out.append(fmt[pos:])
    return out
