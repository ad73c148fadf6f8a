"""Connection start: the client preface, handshake/preface timeouts, ALPN without h2."""

from __future__ import annotations

import socket
import ssl

from hyperframe.frame import GoAwayFrame, SettingsFrame

from tests.h2raw import PREFACE, RawH2, parse_frames, read_until_closed

PROTOCOL_ERROR = 1


def test_wrong_preface_gets_goaway_protocol_error(serve) -> None:
    server = serve("apps.basic:app")
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        # Starts like the preface (so it is HTTP/2 by prior knowledge) but is not one.
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n")
        data, closed = read_until_closed(sock)
    frames = parse_frames(data)
    assert closed
    assert isinstance(frames[0], SettingsFrame)
    goaways = [f for f in frames if isinstance(f, GoAwayFrame)]
    assert len(goaways) == 1 and goaways[0].error_code == PROTOCOL_ERROR
    server.wait_for_log("protocol error from 127.0.0.1")


def test_preface_timeout_closes_silent_connection(serve) -> None:
    server = serve("apps.basic:app", "--handshake-timeout", "0.5")
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        _, closed = read_until_closed(sock, timeout=10)
    assert closed
    server.wait_for_log("no HTTP/2 preface")
    # A partial preface is no better than none.
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(PREFACE[:10])
        _, closed = read_until_closed(sock, timeout=10)
    assert closed


def test_tls_handshake_timeout(serve) -> None:
    server = serve("apps.basic:app", "--handshake-timeout", "0.5", "--log-level", "debug", tls=True)
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        _, closed = read_until_closed(sock, timeout=10)
    assert closed
    server.wait_for_log("TLS handshake with .* timed out")


def test_tls_without_h2_alpn_gets_505(serve, certs) -> None:
    server = serve("apps.basic:app", tls=True)
    ctx = ssl.create_default_context(cafile=certs.ca_pem)
    ctx.set_alpn_protocols(["http/1.1"])
    with socket.create_connection(("127.0.0.1", server.port)) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as sock:
            assert sock.selected_alpn_protocol() == "http/1.1"
            sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            data, closed = read_until_closed(sock)
    assert closed
    assert data.startswith(b"HTTP/1.1 505 HTTP Version Not Supported")
    server.wait_for_log("refused: this server speaks HTTP/2 only")


def test_connection_still_serves_after_good_preface(serve) -> None:
    server = serve("apps.basic:app")
    with RawH2(server.port) as client:
        r = client.get("/")
        assert r.header(b":status") == b"200"
        assert r.body == b"hello"
