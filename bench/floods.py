"""What a bystander sees while another connection floods the server, and how each server ends the flood.

Run from anywhere:  python bench/floods.py [--servers h2gate-trio,hypercorn-asyncio] [--floods priority,ping]

For each server and each flood: start the server, open a *bystander*
connection (bench/h2client.py) that sends one ``GET /`` after another and
times each answer, first for ``--quiet`` seconds alone, then while a second
connection, the *flooder*, sends one kind of frame as fast as the server
takes it:

* ``priority``: PRIORITY frames on an idle stream (RFC 9113 §6.3);
* ``window_update``: connection WINDOW_UPDATEs of 1;
* ``ping``: PINGs (each asks for a PING ACK);
* ``settings``: empty SETTINGS frames (each asks for a SETTINGS ACK);
* ``rapid_reset``: HEADERS for ``GET /`` followed at once by RST_STREAM
  CANCEL, a new stream each time (CVE-2023-44487).

The flooder reads what the server sends back while it writes (non-blocking,
one thread), counts the frames by type, and stops at the first of: the
server's GOAWAY, the connection closing, ``--frames`` frames sent (for
rapid reset: ``--frames // 10`` streams), ``--seconds``, or the server
taking nothing for 2 seconds. Printed per server and flood: the bystander's
median / p99 / max latency alone and during the flood, its failed requests,
and how the flood ended (GOAWAY code and debug text, frames sent, how long,
frames received by type). Loopback only, every loop bounded; printed, never
checked (see bench/README.md, "Floods").
"""

from __future__ import annotations

import argparse
import contextlib
import select
import socket
import ssl
import statistics
import struct
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hpack import Encoder, NeverIndexedHeaderTuple

from bench.h2client import H2Client
from bench.scenarios import each_server, in_workdir, server_spec
from bench.servers import HOST, ServerProcess

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE = 0, 1, 2, 3, 4, 5, 6, 7, 8
FRAME_NAMES = {
    0: "DATA", 1: "HEADERS", 2: "PRIORITY", 3: "RST_STREAM", 4: "SETTINGS", 5: "PUSH_PROMISE", 6: "PING",
    7: "GOAWAY", 8: "WINDOW_UPDATE", 9: "CONTINUATION",
}  # fmt: skip
ERROR_NAMES = {
    0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR", 3: "FLOW_CONTROL_ERROR", 4: "SETTINGS_TIMEOUT",
    5: "STREAM_CLOSED", 6: "FRAME_SIZE_ERROR", 7: "REFUSED_STREAM", 8: "CANCEL", 9: "COMPRESSION_ERROR",
    10: "CONNECT_ERROR", 11: "ENHANCE_YOUR_CALM", 12: "INADEQUATE_SECURITY", 13: "HTTP_1_1_REQUIRED",
}  # fmt: skip
FLOODS = ("priority", "window_update", "ping", "settings", "rapid_reset")
DEFAULT_SERVERS = ("h2gate-trio", "h2gate-asyncio", "hypercorn-asyncio", "granian", "h2corn")
#: Frames per write: large enough to keep the server busy, small enough to stop soon after its GOAWAY.
BATCH = 2_000
#: The flooder gives up when the server has taken nothing for this long (it stopped reading).
STALL = 2.0


def frame(ftype: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + bytes((ftype, flags)) + stream_id.to_bytes(4, "big") + payload


def get_block(port: int) -> bytes:
    """A ``GET /`` header block of never-indexed literals: the same bytes are valid on every stream."""
    fields = [(":method", "GET"), (":path", "/"), (":scheme", "https"), (":authority", f"{HOST}:{port}")]
    return bytes(Encoder().encode([NeverIndexedHeaderTuple(n, v) for n, v in fields]))


class Frames:
    """The flood's frames, batch by batch; ``count`` says how many frames (or streams) went into batches."""

    def __init__(self, kind: str, port: int) -> None:
        self.kind = kind
        self.count = 0
        self._next_stream = 1
        self._block = get_block(port)
        fixed = {
            "priority": frame(PRIORITY, 0, 3, struct.pack(">IB", 0, 15)),
            "window_update": frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1)),
            "ping": frame(PING, 0, 0, b"floodpng"),
            "settings": frame(SETTINGS, 0, 0),
        }
        self._fixed = fixed.get(kind)

    def batch(self, limit: int) -> bytes:
        n = min(BATCH if self._fixed is not None else BATCH // 10, limit - self.count)
        if n <= 0:
            return b""
        self.count += n
        if self._fixed is not None:
            return self._fixed * n
        out = bytearray()
        for _ in range(n):  # rapid reset: open a stream, cancel it at once
            sid = self._next_stream
            self._next_stream += 2
            out += frame(HEADERS, 0x5, sid, self._block) + frame(RST_STREAM, 0, sid, struct.pack(">I", 8))
        return bytes(out)


@dataclass
class FloodResult:
    sent: int = 0  # frames (streams, for rapid reset) written in full
    seconds: float = 0.0
    received: Counter[str] = field(default_factory=Counter)
    goaway: tuple[int, int, bytes] | None = None  # (error code, last stream id, debug data)
    ending: str = ""

    def describe(self, unit: str) -> str:
        got = ", ".join(f"{name} {count:,}" for name, count in self.received.most_common(6)) or "nothing"
        if self.goaway is not None:
            code, last, debug = self.goaway
            text = debug.decode("utf-8", "replace")[:60]
            how = f"GOAWAY {ERROR_NAMES.get(code, hex(code))} (last stream {last}{', ' + repr(text) if text else ''})"
        else:
            how = self.ending
        return f"{how}; {self.sent:,} {unit} sent in {self.seconds:.2f}s; got {got}"


def flood(port: int, kind: str, limit: int, seconds: float) -> FloodResult:
    """Run one flood on a new connection (see the module docstring) and say how it ended."""
    result = FloodResult()
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # throwaway certificate
    ctx.set_alpn_protocols(["h2"])
    sock = ctx.wrap_socket(socket.create_connection((HOST, port), timeout=10))
    frames = Frames(kind, port)
    out = bytearray(PREFACE + frame(SETTINGS, 0, 0) + frame(SETTINGS, 1, 0))  # our SETTINGS, and the ACK of theirs
    inbox = b""
    sock.setblocking(False)
    started = last_progress = last_heard = time.monotonic()
    all_sent = False
    try:
        while True:
            now = time.monotonic()
            if result.goaway is not None or result.ending:
                break
            if now - started > seconds:
                result.ending = f"still open after {seconds:g}s, no GOAWAY"
                break
            if all_sent and now - last_heard > STALL:
                result.ending = "every frame sent, no GOAWAY: the connection stays open"
                break
            if not all_sent and now - last_progress > STALL:
                result.ending = f"no GOAWAY; the server took nothing for {STALL:g}s (it stopped reading)"
                break
            if not out and not all_sent:
                out += frames.batch(limit)
                all_sent = not out
            readable, writable, _ = select.select([sock], [sock] if out else [], [], 0.2)
            if readable or sock.pending():
                try:
                    data = sock.recv(1 << 20)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    data = None
                except OSError as exc:
                    result.ending = f"connection reset ({type(exc).__name__})"
                    break
                if data == b"":
                    result.ending = "closed without GOAWAY"
                    break
                if data:
                    inbox = _parse(inbox + data, result)
                    last_heard = time.monotonic()
            if writable:
                try:
                    n = sock.send(out[:65536])
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    n = 0
                except OSError as exc:
                    result.ending = f"connection reset while sending ({type(exc).__name__})"
                    break
                if n:
                    del out[:n]
                    last_progress = time.monotonic()
                    if not out:
                        result.sent = frames.count
        if result.goaway is not None:  # collect the rest of what it sent (bounded)
            sock.settimeout(0.3)
            with contextlib.suppress(OSError):
                for _ in range(20):
                    data = sock.recv(1 << 20)
                    if not data:
                        break
                    inbox = _parse(inbox + data, result)
    finally:
        result.seconds = time.monotonic() - started
        with contextlib.suppress(OSError):
            sock.close()
    return result


def _parse(buf: bytes, result: FloodResult) -> bytes:
    """Count complete frames by type, note the first GOAWAY; return the incomplete rest."""
    pos = 0
    while len(buf) - pos >= 9:
        length = int.from_bytes(buf[pos : pos + 3], "big")
        if len(buf) - pos < 9 + length:
            break
        ftype = buf[pos + 3]
        name = FRAME_NAMES.get(ftype, f"type {ftype:#x}")
        if ftype in (PING, SETTINGS) and buf[pos + 4] & 0x1:
            name += " ACK"
        result.received[name] += 1
        if ftype == GOAWAY and result.goaway is None and length >= 8:
            body = buf[pos + 9 : pos + 9 + length]
            last, code = struct.unpack(">II", body[:8])
            result.goaway = (code, last & 0x7FFFFFFF, bytes(body[8:]))
        pos += 9 + length
    return buf[pos:]


@dataclass
class Bystander:
    """Sequential ``GET /`` on its own connection; latencies in ms, split by phase."""

    client: H2Client
    phase: str = "quiet"
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"quiet": [], "flood": []})
    failures: Counter[str] = field(default_factory=Counter)
    stop: threading.Event = field(default_factory=threading.Event)
    max_requests: int = 50_000

    def run(self) -> None:
        done = 0
        while not self.stop.is_set() and done < self.max_requests:
            phase = self.phase
            started = time.perf_counter()
            try:
                stream = self.client.get("/", timeout=10)
                ok = stream.status == 200
            except (OSError, TimeoutError, ConnectionError) as exc:
                self.failures[phase] += 1
                print(f"    bystander: {type(exc).__name__}: {exc}", flush=True)
                return
            if ok:
                self.latencies[phase].append((time.perf_counter() - started) * 1000)
            else:
                self.failures[phase] += 1
            done += 1


def summary(values: list[float]) -> str:
    if not values:
        return "no answer"
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {statistics.median(ordered):6.2f} ms  p99 {p99:7.2f} ms  max {ordered[-1]:7.1f} ms  (n={len(ordered)})"


def run_one(server: ServerProcess, ca: Path, kind: str, args: argparse.Namespace) -> None:
    client = H2Client(server.port, ca_pem=str(ca), timeout=10)
    bystander = Bystander(client)
    thread = threading.Thread(target=bystander.run, name="bystander", daemon=True)
    thread.start()
    try:
        time.sleep(args.quiet)
        bystander.phase = "flood"
        limit = args.frames // 10 if kind == "rapid_reset" else args.frames
        result = flood(server.port, kind, limit, args.seconds)
        time.sleep(0.2)  # the bystander's request in flight when the flood ended still counts
    finally:
        bystander.stop.set()
        thread.join(15)
        client.close()
    unit = "streams" if kind == "rapid_reset" else "frames"
    failed = sum(bystander.failures.values())
    print(f"    {kind:<14} bystander alone:    {summary(bystander.latencies['quiet'])}")
    failures = f"  {failed} failed" if failed else ""
    print(f"    {'':<14} during the flood:   {summary(bystander.latencies['flood'])}{failures}")
    print(f"    {'':<14} flood: {result.describe(unit)}", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--servers", default=",".join(DEFAULT_SERVERS), help="comma list of bench/peers.py server names")
    p.add_argument("--floods", default=",".join(FLOODS), help=f"comma list of {', '.join(FLOODS)}")
    p.add_argument("--frames", type=int, default=200_000, help="frames per flood (rapid reset: a tenth, in streams)")
    p.add_argument("--seconds", type=float, default=10.0, help="seconds per flood at most")
    p.add_argument("--quiet", type=float, default=1.5, help="seconds the bystander runs alone first")
    args = p.parse_args(argv)
    kinds = [k for k in args.floods.split(",") if k]
    unknown = set(kinds) - set(FLOODS)
    if unknown:
        p.error(f"unknown flood(s): {', '.join(sorted(unknown))}")
    print(f"== floods: at most {args.frames:,} frames or {args.seconds:g}s each, a bystander sending GET / meanwhile")
    specs = [server_spec(name) for name in args.servers.split(",") if name]

    def body(workdir: Path) -> None:
        for kind in kinds:  # a fresh server per flood: nothing one flood did carries over to the next
            print(f"  -- {kind}")
            for name, server in each_server(specs, workdir, 15):
                print(f"  {name}", flush=True)
                try:
                    run_one(server, workdir / "ca.pem", kind, args)
                except (OSError, ConnectionError, TimeoutError) as exc:
                    print(f"    {kind:<14} could not run: {type(exc).__name__}: {exc}", flush=True)

    return in_workdir("h2gate-floods-", body)


if __name__ == "__main__":
    sys.exit(main())
