"""--max-connections degrades gracefully: stalled handshakes and idle connections make room for a new client.

Against the real server, with the open-file limit set by ``prlimit`` the way a
distribution leaves it (soft 1024), so the defaults themselves are at stake.
"""

from __future__ import annotations

import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from h2gate.ops.admission import STALLED_AFTER
from h2gate.ops.resources import default_max_connections
from tests.conformance.frames import Peer, raw_frame
from tests.conftest import TESTS, Certs, ServerProcess, h2c_client, tls_client
from tests.h2raw import PREFACE
from tests.observe.test_metrics import metrics_url, scrape, value

pytestmark = pytest.mark.skipif(shutil.which("prlimit") is None, reason="prlimit (util-linux) is not installed")
SETTINGS = raw_frame(0x4, 0, 0)


@pytest.fixture
def limited(certs: Certs) -> Iterator[Callable[..., ServerProcess]]:
    """``limited(soft, hard, *flags, tls=False)``: h2gate started under ``prlimit --nofile=soft:hard``."""
    procs: list[ServerProcess] = []

    def start(soft: int, hard: int, *flags: str, tls: bool = False) -> ServerProcess:
        args = ["apps.basic:app", "-b", "127.0.0.1:0", "--metrics-bind", "127.0.0.1:0", *flags]
        if tls:
            args += ["--certfile", certs.cert_pem, "--keyfile", certs.key_pem]
        command = ["prlimit", f"--nofile={soft}:{hard}", sys.executable, "-m", "h2gate"]
        proc = ServerProcess(args, command=command, cwd=TESTS)
        procs.append(proc)
        return proc.wait_ready()

    yield start
    for proc in procs:
        proc.stop()


def soft_nofile(pid: int) -> int:
    with open(f"/proc/{pid}/limits") as fh:
        line = next(line for line in fh if line.startswith("Max open files"))
    return int(line.split()[3])


def open_many(port: int, count: int, first: bytes = b"") -> list[socket.socket]:
    """``count`` connections that send ``first`` (nothing: a TLS handshake that never starts) and then stay."""
    held = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        if first:
            sock.sendall(first)
        held.append(sock)
    return held


def close_all(held: list[socket.socket]) -> None:
    for sock in held:
        sock.close()


def test_the_open_file_limit_is_raised_and_sizes_the_default(limited) -> None:
    server = limited(1024, 4096)
    assert soft_nofile(server.proc.pid) == 4096
    assert default_max_connections(4096) == 4096 - 409
    server.stop()


@pytest.mark.parametrize("kind", ["tls-handshakes", "idle-h2c"])
def test_with_the_defaults_1000_stalled_or_idle_connections_do_not_keep_a_client_out(limited, certs, kind) -> None:
    """Hard limit 1024: the default --max-connections is 922, so 1,000 of them reach it."""
    tls = kind == "tls-handshakes"
    server = limited(1024, 1024, tls=tls)
    assert default_max_connections(1024) < 1000
    started = time.monotonic()
    held = open_many(server.port, 1000, b"" if tls else PREFACE + SETTINGS)
    try:
        time.sleep(STALLED_AFTER + 0.2)  # they are now old enough to count as stalled
        client = tls_client(certs) if tls else h2c_client()
        with client:
            response = client.get(server.url + "/")
        assert response.status_code == 200 and response.text == "hello"
        # It was room made for it, not the handshake timeout (10 s) clearing the table.
        assert time.monotonic() - started < 10
        s = scrape(metrics_url(server))
        reason = "handshake" if tls else "idle"
        assert value(s, "h2gate_connections_evicted_total", reason=reason) >= 1
        server.wait_for_log(r"--max-connections 922 reached", timeout=5)
        server.wait_for_log(r"--max-connections 922: in [\d.]+s refused \d+ new connection\(s\), closed", timeout=15)
    finally:
        close_all(held)


def test_idle_connections_get_goaway_to_make_room(limited) -> None:
    server = limited(20000, 20000, "--max-connections", "5", "--handshake-timeout", "60")
    peers = [Peer("h2c", server.port) for _ in range(5)]  # handshaken, then idle
    with h2c_client() as client:
        assert client.get(server.url + "/").status_code == 200
    # The oldest idle connection was asked to go, with a graceful GOAWAY (NO_ERROR).
    goaway = peers[0].expect_goaway(0)
    assert goaway.last_stream_id == 0
    for peer in peers[1:]:
        peer.expect_alive()
    s = scrape(metrics_url(server))
    assert value(s, "h2gate_connections_evicted_total", reason="idle") == 1
    assert value(s, "h2gate_connections_rejected_total") == 0


def test_busy_connections_are_kept_and_the_newcomer_refused(limited) -> None:
    server = limited(20000, 20000, "--max-connections", "3", "--handshake-timeout", "60")
    young = open_many(server.port, 3)  # handshakes younger than STALLED_AFTER: not closed yet
    try:
        with pytest.raises(httpx.HTTPError), h2c_client() as client:
            client.get(server.url + "/")
        time.sleep(STALLED_AFTER + 0.2)
        with h2c_client() as client:  # now they count as stalled: the oldest makes room
            assert client.get(server.url + "/").status_code == 200
        s = scrape(metrics_url(server))
        assert value(s, "h2gate_connections_rejected_total") == 1
        assert value(s, "h2gate_connections_evicted_total", reason="handshake") == 1
        # Two bursts, as they were more than a second apart: each logged with its own total.
        server.wait_for_log(r"--max-connections 3: in [\d.]+s refused 1 new connection\(s\), closed 0", timeout=15)
        server.wait_for_log(r"refused 0 new connection\(s\), closed 1 stalled handshake\(s\) and 0 idle", timeout=15)
    finally:
        close_all(young)
