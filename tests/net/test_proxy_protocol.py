"""--proxy-protocol: header parsing units, then raw v1/v2 headers before h2c and TLS on the real server."""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import trio
import trio.testing

from h2gate.net.proxy_protocol import (
    V2_SIGNATURE,
    ProxyHeader,
    ProxyHeaderError,
    accept_header,
    parse_v1,
    parse_v2,
    read_header,
)
from tests import h2raw
from tests.h2raw import PREFACE, RawH2, read_until_closed


def v2(command: int, family: int, payload: bytes) -> bytes:
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(payload)) + payload


def v2_tcp4(src: str, sport: int, dst: str = "192.0.2.1", dport: int = 443, tlvs: bytes = b"") -> bytes:
    payload = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport) + tlvs
    return v2(1, 0x11, payload)


def v2_tcp6(src: str, sport: int, dst: str = "2001:db8::1", dport: int = 443) -> bytes:
    addrs = socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
    return v2(1, 0x21, addrs + struct.pack("!HH", sport, dport))


# -- units ---------------------------------------------------------------------------------------


def test_parse_v1() -> None:
    header = parse_v1(b"PROXY TCP4 198.51.100.7 192.0.2.1 4242 443\r\n")
    assert header == ProxyHeader(("198.51.100.7", 4242), ("192.0.2.1", 443))
    assert parse_v1(b"PROXY TCP6 2001:db8::7 2001:db8::1 1 2\r\n").source == ("2001:db8::7", 1)
    assert parse_v1(b"PROXY UNKNOWN\r\n") == ProxyHeader()
    assert parse_v1(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n") == ProxyHeader()


@pytest.mark.parametrize(
    "line",
    [
        b"PROXY TCP4 198.51.100.7 192.0.2.1 4242\r\n",  # a port missing
        b"PROXY TCP4 2001:db8::7 192.0.2.1 1 2\r\n",  # family mismatch
        b"PROXY TCP4 198.51.100.7 192.0.2.1 70000 443\r\n",
        b"PROXY TCP4 198.51.100.7 192.0.2.1 042 443\r\n",  # leading zero
        b"PROXY UDP4 198.51.100.7 192.0.2.1 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
        b"HELLO\r\n",
    ],
)
def test_parse_v1_rejects(line: bytes) -> None:
    with pytest.raises(ProxyHeaderError):
        parse_v1(line)


def test_parse_v2() -> None:
    assert parse_v2(v2_tcp4("198.51.100.7", 4242)).source == ("198.51.100.7", 4242)
    assert parse_v2(v2_tcp4("198.51.100.7", 1, tlvs=b"\x05\x00\x02ab")).source == ("198.51.100.7", 1)  # TLV skipped
    assert parse_v2(v2_tcp6("2001:db8::7", 5)).dest == ("2001:db8::1", 443)
    assert parse_v2(v2(0, 0x00, b"")) == ProxyHeader()  # LOCAL
    assert parse_v2(v2(1, 0x31, b"\x00" * 216)) == ProxyHeader()  # unix: no IP, keep the peer


@pytest.mark.parametrize(
    "header",
    [
        v2(1, 0x11, b"\x00" * 8),  # truncated addresses
        v2(2, 0x11, b"\x00" * 12),  # unknown command
        V2_SIGNATURE + b"\x11\x11\x00\x0c" + b"\x00" * 12,  # version 1 in a v2 frame
        V2_SIGNATURE + b"\x21\x11\xff\xff",  # over the size limit
    ],
)
def test_parse_v2_rejects(header: bytes) -> None:
    with pytest.raises(ProxyHeaderError):
        parse_v2(header)


def test_read_header_takes_only_the_header() -> None:
    async def main() -> None:
        for header in (b"PROXY TCP4 198.51.100.7 192.0.2.1 4242 443\r\n", v2_tcp4("198.51.100.7", 4242)):
            send, receive = trio.testing.memory_stream_pair()
            await send.send_all(header + PREFACE)
            assert (await read_header(receive)).source == ("198.51.100.7", 4242)
            assert await receive.receive_some(100) == PREFACE
        send, receive = trio.testing.memory_stream_pair()
        await send.send_all(b"PROXY " + b"1" * 200)
        with pytest.raises(ProxyHeaderError, match="longer than 107"):
            await read_header(receive)
        send, receive = trio.testing.memory_stream_pair()
        await send.send_all(b"PROXY UNK")
        await send.aclose()
        with pytest.raises(ProxyHeaderError, match="closed after 9"):
            await read_header(receive)

    trio.run(main)


def test_accept_header_times_out_and_local_keeps_peer() -> None:
    async def main() -> None:
        send, receive = trio.testing.memory_stream_pair()
        with trio.fail_after(5):
            assert await accept_header(receive, ("10.0.0.9", 1), 0.05) is None
        send, receive = trio.testing.memory_stream_pair()
        await send.send_all(v2(0, 0x00, b""))
        assert (await accept_header(receive, ("10.0.0.9", 1), 5)).source == ("10.0.0.9", 1)  # type: ignore[union-attr]

    trio.run(main)


# -- end to end ----------------------------------------------------------------------------------


@contextmanager
def preceded_by(monkeypatch: pytest.MonkeyPatch, header: bytes) -> Iterator[None]:
    """RawH2's next connection writes ``header`` before anything else (before TLS, too)."""
    real = socket.create_connection

    def connect(*args: Any, **kwargs: Any) -> socket.socket:
        sock = real(*args, **kwargs)
        sock.sendall(header)
        return sock

    with monkeypatch.context() as m:
        m.setattr(h2raw.socket, "create_connection", connect)
        yield


def client_seen(server: Any, monkeypatch: pytest.MonkeyPatch, header: bytes, ca_pem: str | None = None) -> Any:
    with preceded_by(monkeypatch, header), RawH2(server.port, ca_pem=ca_pem) as raw:
        stream = raw.get("/client")
    assert stream.status == 200, stream
    return json.loads(stream.body)["client"]


@pytest.fixture
def pp_server(serve: Any) -> Any:
    return serve("apps.observe:app", "--proxy-protocol", "--handshake-timeout", "1")


def test_h2c_after_v1_and_v2(pp_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    v1 = b"PROXY TCP4 198.51.100.7 192.0.2.1 4242 443\r\n"
    assert client_seen(pp_server, monkeypatch, v1) == ["198.51.100.7", 4242]
    assert client_seen(pp_server, monkeypatch, v2_tcp6("2001:db8::7", 5555)) == ["2001:db8::7", 5555]
    assert client_seen(pp_server, monkeypatch, v2_tcp4("203.0.113.3", 80, tlvs=b"\x04\x00\x01x")) == [
        "203.0.113.3",
        80,
    ]
    pp_server.wait_for_log(r'198\.51\.100\.7:4242 - "GET /client HTTP/2" 200')


def test_v2_local_keeps_the_real_peer(pp_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    assert client_seen(pp_server, monkeypatch, v2(0, 0x00, b""))[0] == "127.0.0.1"


def test_tls_after_v1(serve: Any, certs: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    server = serve("apps.observe:app", "--proxy-protocol", tls=True)
    header = b"PROXY TCP4 198.51.100.8 192.0.2.1 4343 443\r\n"
    assert client_seen(server, monkeypatch, header, ca_pem=certs.ca_pem) == ["198.51.100.8", 4343]
    assert client_seen(server, monkeypatch, v2_tcp4("198.51.100.9", 1), ca_pem=certs.ca_pem) == ["198.51.100.9", 1]


@pytest.mark.parametrize(
    ("first", "log"),
    [
        (b"PROXY TCP4 1.2.3.4 nonsense 1 2\r\n", "bad PROXY protocol header: bad address"),
        (PREFACE, "does not start with a PROXY header"),  # no header: HTTP/2 straight away
        (v2(1, 0x11, b"\x00\x01"), "v2 IPv4 addresses truncated"),
    ],
)
def test_malformed_or_missing_header_closes(pp_server: Any, first: bytes, log: str) -> None:
    with socket.create_connection(("127.0.0.1", pp_server.port), timeout=5) as sock:
        sock.sendall(first + PREFACE)
        data, closed = read_until_closed(sock, timeout=5)
    assert (data, closed) == (b"", True)
    pp_server.wait_for_log(f"closing connection from 127.0.0.1:\\d+: .*{log}")


def test_header_that_never_comes_times_out(pp_server: Any) -> None:
    with socket.create_connection(("127.0.0.1", pp_server.port), timeout=5) as sock:
        sock.sendall(b"PROXY TCP4 ")
        started = time.monotonic()
        data, closed = read_until_closed(sock, timeout=8)
    assert (data, closed) == (b"", True) and time.monotonic() - started < 8
    pp_server.wait_for_log(r"no PROXY protocol header within 1s")


def test_proxy_headers_trust_the_address_from_the_proxy_header(serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    server = serve("apps.observe:app", "--proxy-protocol", "--proxy-headers", "--forwarded-allow-ips", "10.1.1.0/24")
    forwarded = [(b"x-forwarded-for", b"203.0.113.5")]
    for source, expected in ((b"10.1.1.7", "203.0.113.5"), (b"10.9.9.9", "10.9.9.9")):
        with preceded_by(monkeypatch, b"PROXY TCP4 " + source + b" 192.0.2.1 1000 80\r\n"), RawH2(server.port) as raw:
            stream = raw.get("/client", headers=forwarded)
        assert json.loads(stream.body)["client"][0] == expected
