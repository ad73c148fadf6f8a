"""Real HTTP/2 clients against the real server: curl, nghttp, h2load, and a raw h2 client for PING."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.h2raw import RawH2

APP = "apps.flow:app"


def run(cmd: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd[0]} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def curl(server, certs, tls: bool, tmp_path: Path, path: str = "/hello") -> tuple[str, dict[str, str], bytes]:
    """GET ``path`` with curl; returns (http_version, response headers, body)."""
    head, body = tmp_path / "head.txt", tmp_path / "body.bin"
    cmd = ["curl", "-sS", "--max-time", "20", "-D", str(head), "-o", str(body), "-w", "%{http_version}"]
    if tls:
        # The certificate is for "localhost"; pin that name to the IPv4 loopback the server is bound to.
        cmd += ["--http2", "--cacert", certs.ca_pem, "--resolve", f"localhost:{server.port}:127.0.0.1"]
        url = f"https://localhost:{server.port}{path}"
    else:
        cmd += ["--http2-prior-knowledge"]
        url = f"http://127.0.0.1:{server.port}{path}"
    version = run([*cmd, url]).stdout.strip()
    lines = head.read_text().splitlines()
    assert re.match(r"HTTP/2 200\b", lines[0]), lines
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return version, headers, body.read_bytes()


@pytest.mark.parametrize(("tls", "loop"), [(False, "asyncio"), (True, "asyncio"), (False, "trio"), (True, "trio")])
def test_curl(serve, certs, tmp_path: Path, tls: bool, loop: str) -> None:
    server = serve(APP, "--loop", loop, tls=tls)
    version, headers, body = curl(server, certs, tls, tmp_path)
    assert version == "2"
    assert body == b"hello"
    assert headers["server"] == "h2gate"
    assert re.fullmatch(r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT", headers["date"]), headers["date"]
    assert headers["content-type"] == "text/plain"


def test_no_server_header(serve, certs, tmp_path: Path) -> None:
    server = serve(APP, "--no-server-header")
    version, headers, body = curl(server, certs, False, tmp_path)
    assert version == "2" and body == b"hello"
    assert "server" not in headers
    assert "date" in headers


def parse_nghttp(output: str) -> tuple[dict[str, int], list[tuple[int, int]], list[str]]:
    """From ``nghttp -nv`` output: the server's first SETTINGS, its WINDOW_UPDATEs (stream, increment)
    received before the first response HEADERS, and the kinds of frame received in order."""
    settings: dict[str, int] = {}
    updates: list[tuple[int, int]] = []
    received: list[str] = []
    lines = output.splitlines()
    for i, line in enumerate(lines):
        m = re.search(r"recv (\w+) frame <length=\d+, flags=(0x[0-9a-f]+), stream_id=(\d+)>", line)
        if not m:
            continue
        kind, flags, stream_id = m.group(1), int(m.group(2), 16), int(m.group(3))
        received.append(kind)
        block = []
        for follow in lines[i + 1 :]:
            if not follow.startswith(" "):
                break
            block.append(follow)
        if kind == "SETTINGS" and not flags & 0x1 and not settings:
            for entry in block:
                s = re.search(r"\[SETTINGS_(\w+)\(0x[0-9a-f]+\):(\d+)\]", entry)
                if s:
                    settings[s.group(1)] = int(s.group(2))
        elif kind == "WINDOW_UPDATE" and "HEADERS" not in received:
            inc = re.search(r"window_size_increment=(\d+)", "\n".join(block))
            assert inc, block
            updates.append((stream_id, int(inc.group(1))))
    return settings, updates, received


@pytest.mark.parametrize("tls", [False, True])
def test_nghttp_settings_and_connection_window(serve, tls: bool) -> None:
    server = serve(APP, tls=tls)
    scheme = "https" if tls else "http"
    proc = run(["nghttp", "-nv", "-t", "20", f"{scheme}://127.0.0.1:{server.port}/hello"])
    settings, updates, received = parse_nghttp(proc.stdout)
    assert settings["MAX_CONCURRENT_STREAMS"] == 100
    assert settings["INITIAL_WINDOW_SIZE"] == 262_144
    assert settings["MAX_HEADER_LIST_SIZE"] == 65_536
    assert settings["ENABLE_PUSH"] == 0
    # Right after SETTINGS, a connection-level WINDOW_UPDATE opens the connection window
    # from the protocol's 65535 to --connection-window-size (default 1 MiB).
    assert received[0] == "SETTINGS"
    assert updates and updates[0][0] == 0, (updates, received)
    assert 65_535 + updates[0][1] == 1_048_576
    assert re.search(r"recv \(stream_id=\d+\) :status: 200", proc.stdout)
    assert re.search(r"recv \(stream_id=\d+\) server: h2gate", proc.stdout)


@pytest.mark.parametrize(("tls", "loop"), [(True, "asyncio"), (False, "trio")])
def test_response_header_block_larger_than_a_frame(serve, certs, tmp_path: Path, tls: bool, loop: str) -> None:
    """A 40,000-byte header needs HEADERS plus CONTINUATION frames at the clients' 16 KiB frame size."""
    from tests.apps.flow import pad_value

    server = serve(APP, "--loop", loop, tls=tls)
    with RawH2(server.port, ca_pem=certs.ca_pem if tls else None, record_frames=True) as client:
        stream = client.get("/hello?pad=40000")
        assert (stream.status, stream.body, stream.header(b"x-pad")) == (200, b"hello", pad_value(40_000))
        assert client.frames is not None
        block = [(kind, flags) for kind, flags, sid in client.frames if sid == stream.stream_id and kind != "DataFrame"]
        assert block == [
            ("HeadersFrame", set()),
            ("ContinuationFrame", set()),
            ("ContinuationFrame", {"END_HEADERS"}),
        ], block
    scheme = "https" if tls else "http"
    proc = run(["nghttp", "-nv", "-t", "20", f"{scheme}://127.0.0.1:{server.port}/hello?pad=40000"])
    assert re.search(r"recv \(stream_id=\d+\) x-pad: !\"#", proc.stdout), proc.stdout[-2000:]
    version, headers, body = curl(server, certs, tls, tmp_path, "/hello?pad=40000")
    assert (version, body) == ("2", b"hello")
    assert headers["x-pad"] == pad_value(40_000).decode()
    assert headers["content-type"] == "text/plain"


@pytest.mark.parametrize(("tls", "loop"), [(True, "trio"), (False, "asyncio")])
def test_header_compression_over_many_responses(serve, certs, tls: bool, loop: str) -> None:
    """Repeated and varied blocks both ways, a table size change midway; content-length never enters the table."""
    from h2.settings import SettingCodes

    from tests.apps.flow import pad_value

    server = serve(APP, "--loop", loop, tls=tls)
    with RawH2(server.port, ca_pem=certs.ca_pem if tls else None) as client:
        table = client.h2.decoder.header_table

        def check(rounds: range) -> None:
            for i in rounds:
                size = i % 7 * 13
                for _ in range(2):  # the same request twice: the second block is all indexes
                    stream = client.get(f"/download?key=hpack{i}&size={size}&seed={i}")
                    assert (stream.status, len(stream.body), stream.header(b"content-length")) == (
                        200,
                        size,
                        str(size).encode(),
                    )
                hello = client.get(f"/hello?pad={i}")
                assert (hello.status, hello.body, hello.header(b"x-pad")) == (200, b"hello", pad_value(i))
                assert not [name for name, _ in table.dynamic_entries if name == b"content-length"]

        check(range(20))
        assert any(name == b"x-pad" for name, _ in table.dynamic_entries)  # the table is in use
        client.h2.update_settings({SettingCodes.HEADER_TABLE_SIZE: 64})  # the server must shrink its table
        client.flush()
        check(range(20, 40))
        assert table.maxsize <= 64
        assert sum(len(n) + len(v) + 32 for n, v in table.dynamic_entries) <= 64


def test_wsgi_response_header_block_larger_than_a_frame(serve) -> None:
    from tests.apps.flow import pad_value
    from tests.conftest import h2c_client

    server = serve("apps.wsgi_apps:app", "--interface", "wsgi")
    with h2c_client() as client:
        for _ in range(2):  # the second block is encoded against the HPACK table the first one changed
            r = client.get(server.url + "/pad?n=40000")
            assert (r.http_version, r.status_code, r.content) == ("HTTP/2", 200, b"padded")
            assert r.headers["x-pad"] == pad_value(40_000).decode()


H2LOAD_RE = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored"
)


@pytest.mark.timeout(90)
@pytest.mark.parametrize(("tls", "loop"), [(False, "asyncio"), (True, "trio")])
def test_h2load(serve, tls: bool, loop: str) -> None:
    server = serve(APP, "--loop", loop, "--no-access-log", tls=tls)
    scheme = "https" if tls else "http"
    proc = run(["h2load", "-n", "10000", "-c", "10", "-m", "10", f"{scheme}://127.0.0.1:{server.port}/hello"], 80)
    m = H2LOAD_RE.search(proc.stdout)
    assert m, proc.stdout
    total, started, done, succeeded, failed, errored = map(int, m.groups())
    assert started == total
    assert (total, done, succeeded, failed, errored) == (10_000, 10_000, 10_000, 0, 0), proc.stdout
    assert re.search(r"status codes: 10000 2xx, 0 3xx, 0 4xx, 0 5xx", proc.stdout), proc.stdout
    if tls:
        assert "Application protocol: h2" in proc.stdout
    assert server.proc.poll() is None


@pytest.mark.parametrize("tls", [False, True])
def test_ping_is_acked(serve, certs, tls: bool) -> None:
    server = serve(APP, tls=tls)
    with RawH2(server.port, ca_pem=certs.ca_pem if tls else None) as client:
        client.ping(b"h2gate!!")
        client.ping(b"\x00\x01\x02\x03\x04\x05\x06\x07")
        client.wait_for(lambda: len(client.pings_acked) == 2, what="two PING ACKs")
        assert client.pings_acked == [b"h2gate!!", b"\x00\x01\x02\x03\x04\x05\x06\x07"]
        # The connection is still fine afterwards.
        assert client.get("/hello").data == b"hello"
        assert not client.goaways
