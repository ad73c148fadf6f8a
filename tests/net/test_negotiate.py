"""Negotiation: prior knowledge, HTTP/1.1 Upgrade to h2c, 505 for plain HTTP/1.1, garbage; over cleartext and TLS."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import subprocess

import h2.config
import h2.connection
import h2.events
import pytest

from tests.h2raw import PREFACE, parse_frames, read_until_closed

APP = "apps.basic:app"


def run(cmd: list[str], timeout: float = 30) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd[0]} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def curl(*args: str) -> str:
    return run(["curl", "-sS", "-i", "--max-time", "20", *args])


@pytest.fixture
def h2c(serve):
    return serve(APP, "--log-level", "debug")


def test_curl_http11_gets_505_with_hint(h2c) -> None:
    out = curl("--http1.1", f"http://127.0.0.1:{h2c.port}/")
    assert out.startswith("HTTP/1.1 505 HTTP Version Not Supported")
    assert "connection: close" in out.lower()
    assert "HTTP/2 only" in out and "--http2-prior-knowledge" in out
    h2c.wait_for_log(r"HTTP/1.1 request from .*\(GET /\) refused")


def test_curl_upgrade_get(h2c) -> None:
    out = curl("--http2", f"http://127.0.0.1:{h2c.port}/")
    assert out.startswith("HTTP/1.1 101 Switching Protocols")
    assert "HTTP/2 200" in out and out.endswith("hello")


def test_curl_upgrade_post_body_is_stream_1(h2c) -> None:
    out = curl("--http2", "--data-binary", "x" * 5000, f"http://127.0.0.1:{h2c.port}/echo")
    assert "101 Switching Protocols" in out and "HTTP/2 200" in out
    assert out.endswith("x" * 5000)
    h2c.wait_for_log(r'"POST /echo HTTP/2" 200 5000 .*stream=1')


def test_curl_upgrade_scope_is_http2(h2c) -> None:
    out = curl("--http2", "-H", "X-Test: yes", f"http://127.0.0.1:{h2c.port}/scope?q=1")
    scope = json.loads(out[out.index("{") :])
    assert scope["http_version"] == "2" and scope["scheme"] == "http"
    assert scope["path"] == "/scope" and scope["query_string"] == "q=1"
    names = [name for name, _ in scope["headers"]]
    assert "x-test" in names and "host" in names
    assert not {"upgrade", "connection", "http2-settings"} & set(names)


def test_curl_prior_knowledge(h2c) -> None:
    out = curl("--http2-prior-knowledge", f"http://127.0.0.1:{h2c.port}/")
    assert out.startswith("HTTP/2 200") and out.endswith("hello")


def test_nghttp_upgrade(h2c) -> None:
    out = run(["nghttp", "-uv", f"http://127.0.0.1:{h2c.port}/"])
    assert "HTTP Upgrade success" in out
    assert "hello" in out


def _upgrade_request(body: bytes = b"", method: str = "POST", extra: str = "") -> bytes:
    settings = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True)).initiate_upgrade_connection()
    assert settings is not None
    head = (
        f"{method} /echo HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        f"Upgrade: h2c\r\nHTTP2-Settings: {settings.decode()}\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    )
    return head.encode() + body


def test_raw_upgrade_then_more_streams(h2c) -> None:
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    settings = client.initiate_upgrade_connection()
    with socket.create_connection(("127.0.0.1", h2c.port), timeout=10) as sock:
        head = (
            "POST /echo HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade, HTTP2-Settings\r\n"
            f"Upgrade: h2c\r\nHTTP2-Settings: {settings.decode()}\r\nContent-Length: 4\r\n\r\nping"
        )
        # The preface goes out in the same write as the request: it must not be lost.
        sock.sendall(head.encode() + client.data_to_send())
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += sock.recv(65536)
        status, _, rest = buf.partition(b"\r\n\r\n")
        assert status.startswith(b"HTTP/1.1 101")
        events = client.receive_data(rest)
        sid = client.get_next_available_stream_id()
        assert sid == 3
        client.send_headers(sid, [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "x")], True)
        sock.sendall(client.data_to_send())
        bodies: dict[int, bytes] = {1: b"", 3: b""}
        ended: set[int] = set()
        while ended != {1, 3}:
            for ev in events:
                if isinstance(ev, h2.events.DataReceived):
                    bodies[ev.stream_id] += ev.data
                elif isinstance(ev, h2.events.StreamEnded):
                    ended.add(ev.stream_id)
            if ended == {1, 3}:
                break
            data = sock.recv(65536)
            assert data, "server closed early"
            events = client.receive_data(data)
            sock.sendall(client.data_to_send())
    assert bodies == {1: b"ping", 3: b"hello"}


def test_upgrade_body_above_limit_gets_413(serve) -> None:
    server = serve(APP, "--initial-window-size", "1000")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(_upgrade_request(b"y" * 2000))
        data, closed = read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 413") and closed
    server.wait_for_log("exceeds 1000")


def test_upgrade_with_bad_settings_is_refused(h2c) -> None:
    with socket.create_connection(("127.0.0.1", h2c.port), timeout=10) as sock:
        sock.sendall(
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
            b"Upgrade: h2c\r\nHTTP2-Settings: AAM\r\n\r\n"  # 2 bytes: not a whole setting
        )
        data, closed = read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 505") and closed


def test_expect_100_continue_upgrade(h2c) -> None:
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    settings = client.initiate_upgrade_connection()
    with socket.create_connection(("127.0.0.1", h2c.port), timeout=10) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
            b"HTTP2-Settings: " + settings + b"\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"
        )
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 100")
        sock.sendall(b"abc")
        data = b""
        while b"101 Switching" not in data:
            data += sock.recv(65536)


def test_no_http1_answer_just_closes(serve) -> None:
    server = serve(APP, "--no-http1-answer")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        data, closed = read_until_closed(sock)
    assert data == b"" and closed


def test_garbage_is_closed_with_debug_line(h2c) -> None:
    with socket.create_connection(("127.0.0.1", h2c.port), timeout=10) as sock:
        sock.sendall(b"\x16\x03\x01\x00\xa5garbage\r\n\r\n")
        data, closed = read_until_closed(sock)
    assert data == b"" and closed
    h2c.wait_for_log("neither the HTTP/2 preface nor valid HTTP/1.1")


def test_preface_split_in_small_pieces(h2c) -> None:
    with socket.create_connection(("127.0.0.1", h2c.port), timeout=10) as sock:
        for i in range(0, len(PREFACE), 5):
            sock.sendall(PREFACE[i : i + 5])
        sock.sendall(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")  # empty SETTINGS
        sock.settimeout(5)
        frames = parse_frames(sock.recv(65536))
    assert frames and frames[0].type == 0x4


def _tls_socket(certs, port: int, alpn: list[str] | None) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=certs.ca_pem)
    if alpn is not None:
        ctx.set_alpn_protocols(alpn)
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return ctx.wrap_socket(raw, server_hostname="localhost")


@pytest.mark.parametrize("alpn", [["http/1.1"], None])
def test_tls_http11_gets_505(serve, certs, alpn) -> None:
    server = serve(APP, tls=True)
    with _tls_socket(certs, server.port, alpn) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        data, closed = read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 505") and b"HTTP/2 only" in data and closed
    server.wait_for_log("refused: this server speaks HTTP/2 only")


def test_tls_ignores_h2c_upgrade(serve, certs) -> None:
    server = serve(APP, tls=True)
    with _tls_socket(certs, server.port, ["http/1.1"]) as sock:
        sock.sendall(_upgrade_request(method="GET"))
        data, _ = read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 505")


def test_tls_without_alpn_prior_knowledge(serve, certs) -> None:
    server = serve(APP, tls=True)
    with _tls_socket(certs, server.port, None) as sock:
        client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        client.initiate_connection()
        client.send_headers(1, [(":method", "GET"), (":path", "/"), (":scheme", "https"), (":authority", "x")], True)
        sock.sendall(client.data_to_send())
        body = b""
        done = False
        while not done:
            data = sock.recv(65536)
            assert data
            for ev in client.receive_data(data):
                if isinstance(ev, h2.events.DataReceived):
                    body += ev.data
                done = done or isinstance(ev, h2.events.StreamEnded)
            sock.sendall(client.data_to_send())
    assert body == b"hello"


def test_curl_tls_http11_gets_505(serve, certs) -> None:
    server = serve(APP, tls=True)
    out = curl(
        "--http1.1",
        "--cacert",
        certs.ca_pem,
        "--resolve",
        f"localhost:{server.port}:127.0.0.1",
        f"https://localhost:{server.port}/",
    )
    assert out.startswith("HTTP/1.1 505")


def test_settings_value_is_base64url(h2c) -> None:
    # HTTP2-Settings is base64url without padding (RFC 7540 §3.2.1); padded input is accepted too.
    payload = base64.urlsafe_b64encode(b"\x00\x03\x00\x00\x00\x64").rstrip(b"=")
    with socket.create_connection(("127.0.0.1", h2c.port), timeout=10) as sock:
        sock.sendall(
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
            b"HTTP2-Settings: " + payload + b"\r\n\r\n"
        )
        data = sock.recv(65536)
    assert data.startswith(b"HTTP/1.1 101")


def test_slow_http1_request_times_out(serve) -> None:
    server = serve(APP, "--handshake-timeout", "0.5")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n")  # never finishes its header block
        data, closed = read_until_closed(sock, timeout=10)
    assert data == b"" and closed
    server.wait_for_log("HTTP/1.1 exchange with .* not finished within 0.5s")


# -- HTTP/1.1 framing errors: 400 and close (RFC 9112 §6.1, §6.3) ------------------------------------------


def test_upgrade_with_transfer_encoding_and_content_length_gets_400(h2c) -> None:
    with socket.create_connection(("127.0.0.1", h2c.port), timeout=10) as sock:
        sock.sendall(_upgrade_request(b"", extra="Transfer-Encoding: chunked\r\n") + b"0\r\n\r\n")
        data, closed = read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n") and closed
    assert b"connection: close" in data.lower()
    h2c.wait_for_log(r"both Transfer-Encoding and Content-Length \(400\)")


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ("Content-Length: 4\r\nContent-Length: 5\r\n", b"400"),
        ("Transfer-Encoding: gzip\r\n", b"400"),  # chunked is not the last coding: length unknown (§6.3)
        ("Transfer-Encoding: chunked\r\nContent-Length: 3\r\n", b"400"),
        ("Transfer-Encoding: gzip, chunked\r\n", b"501"),  # framed, but a coding we do not know (§6.1)
    ],
    ids=["duplicate-content-length", "unknown-transfer-encoding", "te-and-cl", "unknown-coding-then-chunked"],
)
def test_malformed_http11_on_the_505_path_gets_an_answer(h2c, fields: str, status: bytes) -> None:
    with socket.create_connection(("127.0.0.1", h2c.port), timeout=10) as sock:
        sock.sendall(f"POST /x HTTP/1.1\r\nHost: localhost\r\n{fields}\r\n".encode())
        data, closed = read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 " + status + b" ") and closed, data[:200]
    assert b"connection: close" in data.lower()


def test_malformed_http11_with_http1_answer_off_just_closes(serve) -> None:
    server = serve(APP, "--no-http1-answer")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
        data, closed = read_until_closed(sock)
    assert data == b"" and closed
