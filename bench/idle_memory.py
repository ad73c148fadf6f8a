"""Memory per idle HTTP/2 TLS connection: h2gate vs Hypercorn (asyncio) vs Granian.

Run from anywhere:  python bench/idle_memory.py [--connections 500] [--servers a,b]

For each server: start it, take its resident memory (all its processes), open
N TLS connections that finish the handshake and the SETTINGS exchange (each
side's SETTINGS acknowledged), get one ``GET /`` answered (``--no-request``:
not) and then stay idle, wait a moment, take the
memory again, and print (after - before) / connections still open. Every
server gets a long keep-alive so none closes the idle connections while they
are counted. Printed, never checked; see bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import select
import socket
import ssl
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hpack import Encoder, NeverIndexedHeaderTuple

from bench.peers import installed_h2gate
from bench.scenarios import COMPARED, each_server, in_workdir, raise_fd_limit, server_spec
from bench.servers import HOST, RssSampler, ServerProcess, ServerSpec

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
EMPTY_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
SETTINGS_ACK = b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"
IDLE_KEEP_ALIVE = 300  # seconds


def long_keep_alive(spec: ServerSpec) -> ServerSpec:
    """``spec`` with an idle timeout long enough to hold the connections while they are counted."""
    base = spec.argv

    def argv(port: int, cert: Path, key: Path) -> list[str]:
        args = base(port, cert, key)
        if spec.name.startswith("h2gate"):
            args += ["--keep-alive-timeout", str(IDLE_KEEP_ALIVE)]
        elif spec.name.startswith("hypercorn"):
            config = cert.parent / "hypercorn.toml"  # written by base(): add to it
            with config.open("a") as fh:
                fh.write(f"keep_alive_timeout = {IDLE_KEEP_ALIVE}\n")
        elif spec.name.startswith(("h2corn", "uvicorn")):
            args += ["--timeout-keep-alive", str(IDLE_KEEP_ALIVE)]
        return args

    return dataclasses.replace(spec, argv=argv)


#: SETTINGS_INITIAL_WINDOW_SIZE 2^31-1 and a connection WINDOW_UPDATE to match: a large response flows at once.
OPEN_WINDOWS = (
    b"\x00\x00\x06\x04\x00\x00\x00\x00\x00" + b"\x00\x04\x7f\xff\xff\xff"
    + b"\x00\x00\x04\x08\x00\x00\x00\x00\x00" + (2**31 - 1 - 65_535).to_bytes(4, "big")
)  # fmt: skip


def get_frame(port: int, path: str = "/") -> bytes:
    """HEADERS for ``GET path`` on stream 1 (END_STREAM), HPACK with literals that leave the table alone."""
    fields = [(":method", "GET"), (":path", path), (":scheme", "https"), (":authority", f"{HOST}:{port}")]
    block = Encoder().encode([NeverIndexedHeaderTuple(n, v) for n, v in fields])
    return len(block).to_bytes(3, "big") + b"\x01\x05" + (1).to_bytes(4, "big") + block


def open_idle(port: int, timeout: float, request: bool = True, path: str = "/") -> ssl.SSLSocket:
    """One TLS h2 connection, SETTINGS exchanged both ways and (``request``) one GET answered, left idle.

    For a ``path`` other than ``/`` the client opens its windows wide first, so
    a large response is sent (and read) whole before the connection idles.
    """
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # throwaway certificate
    ctx.set_alpn_protocols(["h2"])
    raw = socket.create_connection((HOST, port), timeout=timeout)
    sock = ctx.wrap_socket(raw)
    if sock.selected_alpn_protocol() != "h2":
        sock.close()
        raise ConnectionError("ALPN did not pick h2")
    settings = EMPTY_SETTINGS if path == "/" else OPEN_WINDOWS
    sock.sendall(PREFACE + settings + (get_frame(port, path) if request else b""))
    buf, pos, acked, seen, answered = b"", 0, False, False, not request
    deadline = time.monotonic() + timeout
    while not (acked and seen and answered):
        if time.monotonic() > deadline:
            sock.close()
            raise TimeoutError("no SETTINGS exchange (or no answer) in time")
        data = sock.recv(65536)
        if not data:
            sock.close()
            raise ConnectionError("closed during the SETTINGS exchange")
        buf = buf[pos:] + data
        pos = 0
        while len(buf) - pos >= 9:
            length, ftype, flags = int.from_bytes(buf[pos : pos + 3], "big"), buf[pos + 3], buf[pos + 4]
            stream = int.from_bytes(buf[pos + 5 : pos + 9], "big") & 0x7FFFFFFF
            if len(buf) - pos < 9 + length:
                break
            if ftype == 0x4 and flags & 0x1:
                acked = True
            elif ftype == 0x4:
                seen = True
                sock.sendall(SETTINGS_ACK)
            elif ftype in (0x0, 0x1) and stream == 1 and flags & 0x1:
                answered = True  # the response ended (END_STREAM on HEADERS or DATA)
            elif ftype == 0x3 and stream == 1:
                raise ConnectionError("the GET was reset")
            pos += 9 + length
    return sock


def still_open(socks: list[ssl.SSLSocket]) -> int:
    """How many connections the server has not closed (EOF or error) so far."""
    count = 0
    for sock in socks:
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable or sock.pending():
                sock.setblocking(False)
                with contextlib.suppress(ssl.SSLWantReadError, BlockingIOError):
                    if not sock.recv(65536):
                        continue
                sock.setblocking(True)
            count += 1
        except OSError:
            continue
    return count


def measure(server: ServerProcess, connections: int, settle: float, request: bool = True, path: str = "/") -> str:
    """(after - before) / still open, for ``connections`` idle connections to a running server."""
    sampler = RssSampler(server.proc.pid)
    time.sleep(settle)
    before = sampler.sample()
    socks: list[ssl.SSLSocket] = []
    failed = 0
    try:
        for _ in range(connections):
            try:
                socks.append(open_idle(server.port, 30, request, path))
            except (OSError, ConnectionError, TimeoutError):
                failed += 1
        time.sleep(settle)
        after = sampler.sample()
        alive = still_open(socks)
    finally:
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.close()
    if not alive:
        return f"no connection stayed open ({failed} failed to open)"
    per = (after - before) / alive / 1024
    return (
        f"{per:7.1f} KiB per idle TLS connection  (RSS {before / 2**20:.1f} -> {after / 2**20:.1f} MiB, "
        f"{alive} open, {failed} failed)"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--connections", type=int, default=500, help="idle connections per server (default 500)")
    p.add_argument("--servers", default=",".join(COMPARED), help="comma list of bench/run.py server names")
    p.add_argument("--settle", type=float, default=1.0, help="seconds to wait before each memory sample")
    p.add_argument(
        "--no-request", action="store_true", help="only the handshake and SETTINGS (default: and one GET answered)"
    )
    p.add_argument(
        "--path",
        default="/",
        help="what the one request asks for (bench/app.py: / is 13 bytes, /download 5 MiB, read whole)",
    )
    p.add_argument(
        "--h2gate-python",
        metavar="PYTHON",
        help="serve the h2gate rows with the h2gate installed for this Python (e.g. a venv with the compiled "
        "wheel: the row as released), not this checkout",
    )
    args = p.parse_args(argv)
    limit = raise_fd_limit()
    what = "" if args.path == "/" else f", after GET {args.path}"
    print(f"== idle memory: {args.connections} idle TLS h2 connections per server{what} (open-file limit {limit})")
    specs = [server_spec(name) for name in args.servers.split(",") if name]
    if args.h2gate_python:
        specs = [installed_h2gate(s, args.h2gate_python) if s.module == "h2gate" else s for s in specs]
    specs = [long_keep_alive(s) for s in specs]

    def body(workdir: Path) -> None:
        for name, server in each_server(specs, workdir, 15):
            result = measure(server, args.connections, args.settle, not args.no_request, args.path)
            print(f"  {name:<18} {result}", flush=True)

    return in_workdir("h2gate-idle-", body)


if __name__ == "__main__":
    sys.exit(main())
