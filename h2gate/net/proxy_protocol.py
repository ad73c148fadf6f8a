"""PROXY protocol v1 (text) and v2 (binary) headers, as HAProxy and AWS NLB send them.

Theory of operation: with ``--proxy-protocol`` every connection on every bind
starts with one header naming the original client, before TLS or HTTP/2. We
read exactly the header's bytes and no more (v1: one byte at a time up to the
CRLF, at most 107 bytes; v2: 16 fixed bytes, then the announced length), so the
stream is handed to TLS / HTTP/2 untouched and nothing has to be pushed back.
Parsing is pure (:func:`parse_v1`, :func:`parse_v2`) and raises
:class:`ProxyHeaderError`; :func:`accept_header` adds the I/O, the time limit
and the log line, and answers None when the connection must be closed.

A v2 ``LOCAL`` command (the balancer's own health check) and v1 ``UNKNOWN``
keep the real TCP peer, as the specification asks.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import struct
from dataclasses import dataclass

import trio

from h2gate.net.transport import Address

log = logging.getLogger("h2gate.error")

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_MAX = 107  # the longest v1 line, CRLF included (spec §2.1)
#: Largest v2 payload accepted (addresses plus TLVs); the spec allows 64 KiB, balancers send far less.
V2_MAX_PAYLOAD = 4096
_V1_FAMILIES = {b"TCP4": 4, b"TCP6": 6}


class ProxyHeaderError(ValueError):
    """The connection did not start with a valid PROXY protocol header; the text says why."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """The addresses a header reported; ``source`` None means "keep the TCP peer" (LOCAL, UNKNOWN)."""

    source: Address = None
    dest: Address = None


def _ip(text: bytes, version: int) -> str:
    try:
        addr = ipaddress.ip_address(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise ProxyHeaderError(f"bad address {text[:64]!r}") from None
    if addr.version != version:
        raise ProxyHeaderError(f"address {addr} is not IPv{version}")
    return str(addr)


def _port(text: bytes) -> int:
    if not text.isdigit() or len(text) > 5 or int(text) > 65535 or (len(text) > 1 and text[:1] == b"0"):
        raise ProxyHeaderError(f"bad port {text[:16]!r}")
    return int(text)


def parse_v1(line: bytes) -> ProxyHeader:
    """A whole v1 line, CRLF included. Raises ProxyHeaderError."""
    if not line.startswith(b"PROXY ") or not line.endswith(b"\r\n") or len(line) > V1_MAX:
        raise ProxyHeaderError("not a PROXY v1 line")
    parts = line[6:-2].split(b" ")
    if parts[0] == b"UNKNOWN":
        return ProxyHeader()
    version = _V1_FAMILIES.get(parts[0])
    if version is None:
        raise ProxyHeaderError(f"unknown v1 protocol {parts[0][:16]!r}")
    if len(parts) != 5:
        raise ProxyHeaderError("a v1 line needs protocol, two addresses and two ports")
    src, dst = _ip(parts[1], version), _ip(parts[2], version)
    return ProxyHeader((src, _port(parts[3])), (dst, _port(parts[4])))


def v2_length(fixed: bytes) -> int:
    """The payload length announced by the 16 fixed bytes of a v2 header. Raises ProxyHeaderError."""
    if len(fixed) != 16 or not fixed.startswith(V2_SIGNATURE):
        raise ProxyHeaderError("not a PROXY v2 header")
    if fixed[12] >> 4 != 2:
        raise ProxyHeaderError(f"unsupported v2 version {fixed[12] >> 4}")
    length = struct.unpack("!H", fixed[14:16])[0]
    if length > V2_MAX_PAYLOAD:
        raise ProxyHeaderError(f"v2 header of {length} bytes is over the {V2_MAX_PAYLOAD}-byte limit")
    return length


def parse_v2(header: bytes) -> ProxyHeader:
    """A whole v2 header: 16 fixed bytes and the payload. Raises ProxyHeaderError."""
    length = v2_length(header[:16])
    if len(header) != 16 + length:
        raise ProxyHeaderError("v2 header length does not match")
    command, family, payload = header[12] & 0x0F, header[13], header[16:]
    if command == 0:  # LOCAL: the proxy's own connection (health check)
        return ProxyHeader()
    if command != 1:
        raise ProxyHeaderError(f"unknown v2 command {command}")
    if family in (0x11, 0x12):  # TCP or UDP over IPv4
        if length < 12:
            raise ProxyHeaderError("v2 IPv4 addresses truncated")
        src, dst, sport, dport = struct.unpack("!4s4sHH", payload[:12])
        return ProxyHeader(
            (socket.inet_ntop(socket.AF_INET, src), sport), (socket.inet_ntop(socket.AF_INET, dst), dport)
        )
    if family in (0x21, 0x22):  # IPv6
        if length < 36:
            raise ProxyHeaderError("v2 IPv6 addresses truncated")
        src, dst, sport, dport = struct.unpack("!16s16sHH", payload[:36])
        return ProxyHeader(
            (socket.inet_ntop(socket.AF_INET6, src), sport), (socket.inet_ntop(socket.AF_INET6, dst), dport)
        )
    # UNSPEC or unix sockets: no IP address to report, keep the TCP peer.
    return ProxyHeader()


async def _exactly(stream: trio.abc.ReceiveStream, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = await stream.receive_some(size - len(data))
        if not chunk:
            raise ProxyHeaderError(f"connection closed after {len(data)} header bytes")
        data += chunk
    return data


async def read_header(stream: trio.abc.ReceiveStream) -> ProxyHeader:
    """Read one v1 or v2 header off ``stream``, not a byte more. Raises ProxyHeaderError."""
    start = await _exactly(stream, 12)  # the shortest valid header, "PROXY UNKNOWN\r\n", is 15 bytes
    if start == V2_SIGNATURE:
        fixed = start + await _exactly(stream, 4)
        return parse_v2(fixed + await _exactly(stream, v2_length(fixed)))
    if not start.startswith(b"PROXY "):
        raise ProxyHeaderError(f"connection does not start with a PROXY header: {start!r}")
    line = start
    while not line.endswith(b"\r\n"):
        if len(line) >= V1_MAX:
            raise ProxyHeaderError(f"v1 line longer than {V1_MAX} bytes")
        line += await _exactly(stream, 1)
    return parse_v1(line)


async def accept_header(stream: trio.abc.ReceiveStream, peer: Address, timeout: float) -> ProxyHeader | None:
    """The header's addresses (``source`` falling back to ``peer``), or None (logged) to close the connection."""
    who = f"{peer[0]}:{peer[1]}" if peer and peer[1] is not None else "unix socket"
    with trio.move_on_after(timeout):
        try:
            header = await read_header(stream)
        except ProxyHeaderError as exc:
            log.warning("closing connection from %s: bad PROXY protocol header: %s", who, exc)
            return None
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            log.warning("closing connection from %s: lost while reading the PROXY header: %r", who, exc)
            return None
        return header if header.source is not None else ProxyHeader(peer, header.dest)
    log.warning("closing connection from %s: no PROXY protocol header within %gs", who, timeout)
    return None
