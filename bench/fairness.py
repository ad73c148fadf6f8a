"""Fairness on one connection: small requests while a 100 MB download runs beside them.

Run from anywhere:  python bench/fairness.py [--mb 100] [--small 200] [--servers a,b]

One TLS connection per run, a Python h2 client with browser-like windows
(16 MiB per stream and for the connection). Small ``GET /`` requests are
issued one after another (a new one 5 ms after the previous answer) and
their latency (request sent -> response ended) is recorded, in three runs:

* ``alone``: no download: the baseline;
* ``download``: while ``GET /big?mb=N`` downloads on the same connection,
  no priority signals (h2gate shares round-robin);
* ``priority``: the same, with RFC 9218 signals: ``priority: u=7, i`` on the
  download and ``u=0`` on the small requests.

Prints p50/p99 of the small requests and the download's MB/s per server.
Bounded by the request count and ``--limit`` seconds per run; never asserts.
"""

from __future__ import annotations

import argparse
import dataclasses
import select
import socket
import ssl
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import h2.config
import h2.connection
import h2.events
import h2.settings

from bench.peers import APP
from bench.scenarios import each_server, in_workdir, server_spec
from bench.servers import HOST, ServerSpec

FAIR_APP = "bench.fairness_app:app"
WINDOW = 16 * 1024 * 1024
GAP = 0.005  # seconds between an answer and the next small request
MODES = ("alone", "download", "priority")


def serving_fairness_app(spec: ServerSpec) -> ServerSpec:
    base = spec.argv

    def argv(port: int, cert: Path, key: Path) -> list[str]:
        return [FAIR_APP if arg == APP else arg for arg in base(port, cert, key)]

    return dataclasses.replace(spec, argv=argv)


@dataclass
class Outcome:
    latencies_ms: list[float] = field(default_factory=list)
    download_bytes: int = 0
    download_seconds: float = 0.0
    error: str = ""

    def line(self) -> str:
        if self.error:
            return f"failed: {self.error}"
        lat = self.latencies_ms
        if len(lat) < 2:
            return f"only {len(lat)} small responses"
        cuts = statistics.quantiles(lat, n=100, method="inclusive")
        text = f"small p50 {cuts[49]:7.2f} ms  p99 {cuts[98]:7.2f} ms  ({len(lat)} requests)"
        if self.download_seconds:
            text += f"  download {self.download_bytes / self.download_seconds / 1e6:6.1f} MB/s"
        return text


def _connect(port: int) -> tuple[ssl.SSLSocket, h2.connection.H2Connection]:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # throwaway certificate
    ctx.set_alpn_protocols(["h2"])
    sock = ctx.wrap_socket(socket.create_connection((HOST, port), timeout=10))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    conn.local_settings = h2.settings.Settings(
        client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: WINDOW}
    )
    conn.initiate_connection()
    conn.increment_flow_control_window(WINDOW)
    sock.sendall(conn.data_to_send())
    return sock, conn


def _get(conn: h2.connection.H2Connection, port: int, path: str, priority: bytes | None) -> int:
    sid = conn.get_next_available_stream_id()
    headers = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", f"{HOST}:{port}".encode())]
    headers.append((b":path", path.encode()))
    if priority is not None:
        headers.append((b"priority", priority))
    conn.send_headers(sid, headers, end_stream=True)
    return sid


def run_once(port: int, mode: str, mb: int, count: int, limit: float) -> Outcome:
    """One connection: the small requests, with or without the download beside them."""
    out = Outcome()
    sock, conn = _connect(port)
    deadline = time.monotonic() + limit
    big = None
    big_started = 0.0
    if mode != "alone":
        big = _get(conn, port, f"/big?mb={mb}", b"u=7, i" if mode == "priority" else None)
        big_started = time.monotonic()
    small_priority = b"u=0" if mode == "priority" else None
    # With a download, the small requests start once its first bytes arrived.
    small, sent_at, next_at = None, 0.0, time.monotonic() if big is None else deadline
    try:
        while time.monotonic() < deadline:
            now = time.monotonic()
            if small is None and now >= next_at:
                if len(out.latencies_ms) >= count or (big is not None and out.download_seconds):
                    break
                small, sent_at = _get(conn, port, "/", small_priority), time.monotonic()
            data_out = conn.data_to_send()
            if data_out:
                sock.sendall(data_out)
            wait = min(0.05, max(0.0, next_at - now)) if small is None else 0.05
            if not sock.pending():
                select.select([sock], [], [], wait)
            try:
                sock.setblocking(False)
                data = sock.recv(262144)
            except (ssl.SSLWantReadError, BlockingIOError):
                continue
            finally:
                sock.setblocking(True)
            if not data:
                out.error = "server closed the connection"
                break
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.DataReceived):
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    if event.stream_id == big:
                        if not out.download_bytes and small is None:
                            next_at = time.monotonic()
                        out.download_bytes += len(event.data)
                elif isinstance(event, h2.events.StreamEnded):
                    if event.stream_id == small:
                        out.latencies_ms.append((time.monotonic() - sent_at) * 1000)
                        small, next_at = None, time.monotonic() + GAP
                    elif event.stream_id == big:
                        out.download_seconds = time.monotonic() - big_started
                elif isinstance(event, h2.events.StreamReset | h2.events.ConnectionTerminated):
                    out.error = f"server ended a stream: {event!r}"
                    return out
        else:
            if big is not None and not out.download_seconds:
                out.error = out.error or f"time limit ({limit:.0f}s) before the download ended"
    finally:
        sock.close()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mb", type=int, default=100, help="download size in MB (default 100)")
    p.add_argument("--small", type=int, default=2000, help="most small requests per run (default 2000)")
    p.add_argument("--servers", default="h2gate-trio,hypercorn-asyncio", help="bench/run.py server names")
    p.add_argument("--limit", type=float, default=120.0, help="seconds per run at most")
    args = p.parse_args(argv)
    print(f"== fairness: small GET / on the connection of a {args.mb} MB download (TLS, one connection)")
    specs = [serving_fairness_app(server_spec(name)) for name in args.servers.split(",") if name]

    def body(workdir: Path) -> None:
        for name, server in each_server(specs, workdir, 15):
            for mode in MODES:
                small = args.small if mode != "alone" else min(args.small, 200)
                outcome = run_once(server.port, mode, args.mb, small, args.limit)
                print(f"  {name:<18} {mode:<9} {outcome.line()}", flush=True)

    return in_workdir("h2gate-fair-", body)


if __name__ == "__main__":
    sys.exit(main())
