"""Bulk uploads and downloads over long paths: h2gate's adaptive flow control beside Hypercorn and Granian.

Each server serves bench/flow_app.py over TLS on 127.0.0.1; a delaying proxy
(bench/delay.py: this kernel has no netem) plays a link of a given round-trip
time and rate in front of it. One HTTP/2 client (bench/h2client.py, with
1 GiB receive windows so downloads are never held back by the client) moves
``--size`` MB up (POST /upload) and down (GET /download) on one stream per
transfer, over a fresh connection each time, and prints MB/s per RTT. The
``link`` row is plain TCP through the same proxy: what the path carries
without HTTP/2, the figure the others are a share of. Beside each transfer:
the most bytes that were in flight on the path (the proxy's pipe) and, for
uploads, the largest stream window the server granted.

A transfer that has not ended within ``--time-limit`` seconds is stopped and
reported from the bytes that moved (marked ``*``): a server whose windows stay
at 64 KiB would otherwise take 5 minutes per 100 MB at 200 ms. Servers take
turns in a different order each round; figures are medians of the rounds.

    python bench/flow.py                       # 100 MB, RTT 0/10/50/200 ms, 100 Mbit/s, 1 round
    python bench/flow.py --size 20 --rtts 50 --servers h2gate,h2gate-fixed --rounds 3
"""

from __future__ import annotations

import argparse
import select
import socket
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import h2.settings

from bench.delay import DelayProxy
from bench.h2client import H2Client
from bench.peers import _granian, _h2gate, _hypercorn, installed_h2gate
from bench.servers import HOST, ServerProcess, ServerSpec, free_port, interrupt_on_sigterm, make_cert, wait_ready

APP = "bench.flow_app:app"
MB = 1_000_000
FIXED = ("--max-window-size", "0", "--max-connection-window-size", "0")
QUIET = ("--no-access-log", "--log-level", "warning")
SPECS = {
    spec.name: spec
    for spec in (
        ServerSpec("h2gate", _h2gate(APP, *QUIET), "h2gate"),
        ServerSpec("h2gate-trio", _h2gate(APP, "--loop", "trio", *QUIET), "h2gate"),
        ServerSpec("h2gate-fixed", _h2gate(APP, *QUIET, *FIXED), "h2gate"),
        ServerSpec("hypercorn", _hypercorn(APP, "asyncio"), "hypercorn"),
        ServerSpec("granian", lambda p, c, k: [*_granian("asgi", APP)(p, c, k), "--http2-adaptive-window"], "granian"),
    )
}
WINDOW = 1 << 30  # the client's receive windows: never what holds a download back


@dataclass
class Result:
    moved: int  # bytes transferred
    seconds: float
    done: bool  # the whole size moved within the time limit
    in_flight: int  # the most bytes in the proxy's pipe in the transfer's direction
    window: int = 0  # uploads: the largest stream window the server granted

    @property
    def rate(self) -> float:
        return self.moved / self.seconds / MB if self.seconds else 0.0


# --------------------------------------------------------------------------- HTTP/2 transfers


class _Client(H2Client):
    """H2Client whose writes wait up to the transfer's limit (pump() leaves its short read timeout on the socket)."""

    def __init__(self, port: int, *, limit: float, **kwargs: Any) -> None:
        self.limit = limit
        super().__init__(port, timeout=limit, **kwargs)

    def flush(self) -> None:
        self.sock.settimeout(self.limit)
        super().flush()


def _client(port: int, ca: str, limit: float) -> H2Client:
    client = _Client(port, limit=limit, ca_pem=ca, settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: WINDOW})
    client.h2.increment_flow_control_window(WINDOW - 65_535)
    client.flush()
    return client


def download(port: int, ca: str, size: int, limit: float) -> tuple[int, float, bool]:
    with _client(port, ca, limit) as client:
        started = time.monotonic()
        stream = client.streams[client.request("GET", f"/download?size={size}", keep_data=False)]
        deadline = started + limit
        while not stream.done and not client.eof and time.monotonic() < deadline:
            client.pump(min(0.5, max(0.001, deadline - time.monotonic())))
        return stream.received, time.monotonic() - started, stream.ended and stream.received == size


def upload(port: int, ca: str, size: int, limit: float) -> tuple[int, float, bool, int]:
    with _client(port, ca, limit) as client:
        conn, sock = client.h2, client.sock
        started = time.monotonic()
        sid = client.request("POST", "/upload", end_stream=False)
        stream = client.streams[sid]
        deadline = started + limit
        sent, widest = 0, 0
        while sent < size and not stream.done and not client.eof and time.monotonic() < deadline:
            widest = max(widest, conn.streams[sid].outbound_flow_control_window)
            room = min(conn.local_flow_control_window(sid), size - sent, BATCH)
            while room > 0:  # a batch of full frames, written at once
                chunk = min(room, conn.max_outbound_frame_size)
                conn.send_data(sid, CHUNK[:chunk], end_stream=sent + chunk == size)
                sent += chunk
                room -= chunk
            client.flush()
            if conn.local_flow_control_window(sid) <= 0:
                client.pump(0.5)  # wait for the server's WINDOW_UPDATE
            elif sock.pending() or select.select([sock], [], [], 0)[0]:
                client.pump(0.001)
        while not stream.done and not client.eof and time.monotonic() < deadline:
            client.pump(min(0.5, max(0.001, deadline - time.monotonic())))
        ok = stream.ended and stream.status == 200 and stream.body == str(size).encode()
        return sent, time.monotonic() - started, ok, widest


BATCH = 256 * 1024
CHUNK = b"u" * (1 << 20)


# --------------------------------------------------------------------------- the link without HTTP/2


class Sink:
    """A plain TCP server on 127.0.0.1: ``U`` first reads everything sent, ``D<size>\\n`` sends ``size`` bytes."""

    def __init__(self) -> None:
        self._listener = socket.create_server((HOST, 0))
        self._listener.settimeout(0.5)
        self.port = self._listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        conn.settimeout(600)
        with conn:
            try:
                kind = conn.recv(1)
                if kind == b"U":
                    while conn.recv(1 << 20):
                        pass
                    conn.sendall(b"k")
                elif kind == b"D":
                    line = b""
                    while not line.endswith(b"\n"):
                        line += conn.recv(1)
                    left = int(line)
                    while left > 0:
                        n = min(left, len(CHUNK))
                        conn.sendall(CHUNK[:n])
                        left -= n
            except OSError:
                pass

    def close(self) -> None:
        self._closed = True
        self._listener.close()


def tcp_transfer(port: int, direction: str, size: int, limit: float) -> tuple[int, float, bool]:
    started = time.monotonic()
    deadline = started + limit
    moved = 0
    with socket.create_connection((HOST, port), timeout=limit) as sock:
        if direction == "upload":
            sock.sendall(b"U")
            while moved < size and time.monotonic() < deadline:
                n = min(size - moved, len(CHUNK))
                sock.sendall(CHUNK[:n])
                moved += n
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                done = sock.recv(1) == b"k"
            except TimeoutError:
                done = False
        else:
            sock.sendall(b"D%d\n" % size)
            while moved < size and time.monotonic() < deadline:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    data = sock.recv(1 << 20)
                except TimeoutError:
                    break
                if not data:
                    break
                moved += len(data)
            done = moved == size
    return moved, time.monotonic() - started, done and moved == size


# --------------------------------------------------------------------------- one run


def measure(
    name: str, port: int, ca: str, rtt: float, rate: float | None, size: int, limit: float
) -> dict[str, Result]:
    results = {}
    for direction in ("upload", "download"):
        with DelayProxy(port, rtt, rate) as proxy:
            window = 0
            if name == "link":
                moved, seconds, done = tcp_transfer(proxy.port, direction, size, limit)
            elif direction == "upload":
                moved, seconds, done, window = upload(proxy.port, ca, size, limit)
            else:
                moved, seconds, done = download(proxy.port, ca, size, limit)
            pipe = proxy.pipes[0][0 if direction == "upload" else 1] if proxy.pipes else None
            results[direction] = Result(moved, seconds, done, pipe.most if pipe else 0, window)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=float, default=100, help="MB per transfer (default 100)")
    parser.add_argument("--rtts", default="0,10,50,200", help="round-trip times in ms (default 0,10,50,200)")
    parser.add_argument("--rate", type=float, default=100, help="the link's rate in Mbit/s each way (0: unlimited)")
    parser.add_argument("--servers", default="h2gate,h2gate-fixed,hypercorn,granian")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--time-limit", type=float, default=40, help="seconds per transfer at most (default 40)")
    parser.add_argument(
        "--h2gate-python",
        metavar="PYTHON",
        help="serve the h2gate rows with the h2gate installed for this Python (e.g. a venv with the compiled "
        "wheel: the row as released), not this checkout",
    )
    args = parser.parse_args()
    if args.h2gate_python:
        for name, spec in list(SPECS.items()):
            if spec.module == "h2gate":
                SPECS[name] = installed_h2gate(spec, args.h2gate_python)
    interrupt_on_sigterm()
    size = int(args.size * MB)
    rtts = [float(x) / 1000 for x in args.rtts.split(",")]
    rate = args.rate * 1e6 / 8 if args.rate else None
    names = ["link", *args.servers.split(",")]
    print(f"flow: {size / MB:g} MB per transfer, link {args.rate:g} Mbit/s each way"
          f"{f' (= {rate / MB:.1f} MB/s)' if rate else ''}, RTT {args.rtts} ms, {args.rounds} round(s), "
          f"at most {args.time_limit:g}s per transfer")  # fmt: skip
    runs: dict[tuple[str, float, str], list[Result]] = {}
    with tempfile.TemporaryDirectory(prefix="h2gate-flow-") as tmp:
        cert, key = make_cert(Path(tmp))
        ca = str(Path(tmp) / "ca.pem")
        ports: dict[str, int] = {}
        servers: list[ServerProcess] = []
        sink = Sink()
        try:
            for name in names:
                if name == "link":
                    ports[name] = sink.port
                    continue
                spec = SPECS[name]
                why = spec.unavailable()
                if why:
                    print(f"  {name}: skipped ({why})")
                    continue
                server = ServerProcess(spec, free_port(), cert, key, Path(tmp) / f"{name}.log")
                servers.append(server)
                failed = wait_ready(server, 60)
                if failed:
                    print(f"  {name}: {failed}\n{server.log_tail()}")
                    continue
                ports[name] = server.port
                print(f"  {name} {spec.version()} ready on port {server.port}")
            order = [n for n in names if n in ports]
            for round_no in range(args.rounds):
                for rtt in rtts:
                    turn = order[round_no % len(order) :] + order[: round_no % len(order)]
                    for name in turn:
                        got = measure(name, ports[name], ca, rtt, rate, size, args.time_limit)
                        for direction, result in got.items():
                            runs.setdefault((name, rtt, direction), []).append(result)
                            extra = f", window {result.window / 1024:.0f} KiB" if result.window else ""
                            print(f"  round {round_no + 1} rtt {rtt * 1000:g} ms {name:13} {direction:8} "
                                  f"{result.rate:7.2f} MB/s{'' if result.done else '*'} "
                                  f"({result.moved / MB:.1f} MB in {result.seconds:.1f}s, "
                                  f"in flight {result.in_flight / 1024:.0f} KiB{extra})", flush=True)  # fmt: skip
        finally:
            for server in servers:
                server.stop()
            sink.close()
    print()
    print("median MB/s (* = stopped at the time limit; % = share of the link row at that RTT)")
    header = f"{'server':14}" + "".join(f"{f'{r * 1000:g} ms up':>16}{f'{r * 1000:g} ms down':>16}" for r in rtts)
    print(header)
    for name in [n for n in names if (n, rtts[0], "upload") in runs]:
        cells = []
        for rtt in rtts:
            for direction in ("upload", "download"):
                results = runs[(name, rtt, direction)]
                value = statistics.median(r.rate for r in results)
                link = runs.get(("link", rtt, direction))
                share = f" {value / statistics.median(r.rate for r in link):4.0%}" if link and name != "link" else ""
                mark = "" if all(r.done for r in results) else "*"
                cells.append(f"{value:9.2f}{mark:1}{share:>6}")
        print(f"{name:14}" + "".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
