"""In-process cost of the HTTP/2 codec candidates against h2, for the same bytes: the codec micro-benchmark.

Run from anywhere:  python bench/codecs.py [--rounds 5] [--requests 20000] [--codecs h2,ngh2,...]
                    python bench/codecs.py --probes      # what each codec enforces itself (bench/codec_probes.py)

No sockets, TLS, event loop or application: each codec (bench/codec_adapters.py)
is handed the same client bytes, made once with hpack and hyperframe, and
answers each GET with ``:status 200``, three fields and a 13-byte body ending
the stream, as a server would. Three workloads, microseconds of server-side
work per request:

* ``fresh``: a new connection per request: our SETTINGS, then the client's
  preface + SETTINGS + one GET + SETTINGS ACK, then the response. Construction
  included: this is "a client preface + one GET + the response".
* ``open``: one GET per read on a connection already set up (HPACK tables warm,
  the client's fields indexed), like a browser fetching one resource at a time;
  2,000 requests per connection (zttp ends a connection after 4,096 streams).
* ``batch10``: ten GETs per read on an open connection, like ``h2load -m 10``.

Before timing, every codec's output is decoded (hyperframe + hpack) and
checked: each request got ``:status 200`` and the body with END_STREAM, so no
codec is timed doing less than the others. Then the codecs take turns for
``--rounds`` rounds and the median per workload is printed with every round.
``--memory`` adds the resident memory per connection, each codec in a fresh
process holding 2,000 connections that served one request. Printed, never
checked; see bench/README.md ("Choosing a native codec").
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hpack import Decoder, Encoder
from hyperframe.frame import DataFrame, Frame, HeadersFrame, SettingsFrame, WindowUpdateFrame

from bench.codec_adapters import ADAPTERS, Adapter
from bench.servers import HELLO, module_version

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
REQUEST = [
    (b":method", b"GET"), (b":path", b"/"), (b":scheme", b"https"), (b":authority", b"127.0.0.1:8443"),
    (b"user-agent", b"h2load nghttp2/1.52.0"),
]  # fmt: skip
WORKLOADS = ("fresh", "open", "batch10")
PER_CONNECTION = 2000


# --------------------------------------------------------------------------- the client's bytes


def client_start() -> bytes:
    """Preface, SETTINGS as h2load sends them, and the connection window opened wide."""
    settings = SettingsFrame(0)
    settings.settings = {SettingsFrame.ENABLE_PUSH: 0, SettingsFrame.MAX_CONCURRENT_STREAMS: 100}
    window = WindowUpdateFrame(0)
    window.window_increment = 2**31 - 1 - 65_535
    return PREFACE + settings.serialize() + window.serialize()


def settings_ack() -> bytes:
    ack = SettingsFrame(0)
    ack.flags.add("ACK")
    return ack.serialize()


def get(encoder: Encoder, stream_id: int) -> bytes:
    frame = HeadersFrame(stream_id)
    frame.data = encoder.encode(REQUEST)
    frame.flags.add("END_HEADERS")
    frame.flags.add("END_STREAM")
    return frame.serialize()


def fresh_wire() -> bytes:
    return client_start() + get(Encoder(), 1) + settings_ack()


def open_wire(requests: int, per_read: int) -> tuple[bytes, list[bytes]]:
    """The set-up bytes and then ``requests`` GETs (streams 1, 3, ...) in reads of ``per_read``."""
    encoder = Encoder()
    frames = [get(encoder, 2 * i + 1) for i in range(requests)]
    reads = [b"".join(frames[i : i + per_read]) for i in range(0, requests, per_read)]
    return client_start() + settings_ack(), reads


# --------------------------------------------------------------------------- checking the answers


def responses(out: bytes, decoder: Decoder) -> dict[int, tuple[str, bytes, bool]]:
    """Per stream: (:status, body, ended) read from a server's bytes (its SETTINGS etc. skipped)."""
    found: dict[int, tuple[str, bytes, bool]] = {}
    view = memoryview(out)
    while len(view) >= 9:
        frame, length = Frame.parse_frame_header(view[:9])
        frame.parse_body(view[9 : 9 + length])
        view = view[9 + length :]
        status, body, ended = found.get(frame.stream_id, ("", b"", False))
        if isinstance(frame, HeadersFrame):
            fields = dict(decoder.decode(frame.data, raw=True))
            status = fields.get(b":status", b"").decode()
        elif isinstance(frame, DataFrame):
            body += frame.data
        else:
            continue
        found[frame.stream_id] = (status, body, ended or "END_STREAM" in frame.flags)
    return found


def check(adapter: Adapter) -> str | None:
    """None if the codec answers all three workloads correctly, else what was wrong."""
    try:
        conn = adapter.new()
        got = responses(adapter.serve(conn, fresh_wire()), Decoder())
        if got.get(1) != ("200", HELLO, True):
            return f"fresh: stream 1 got {got.get(1)}"
        for per_read in (1, 10):
            setup, reads = open_wire(30, per_read)
            conn, decoder = adapter.new(), Decoder()
            responses(adapter.serve(conn, setup), decoder)
            answered: dict[int, Any] = {}
            for chunk in reads:
                answered.update(responses(adapter.serve(conn, chunk), decoder))
            bad = {sid: r for sid, r in answered.items() if r != ("200", HELLO, True)}
            if len(answered) != 30 or bad:
                return f"{per_read} per read: {len(answered)} of 30 answered, wrong: {bad}"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


# --------------------------------------------------------------------------- timing


def time_workload(adapter: Adapter, workload: str, requests: int) -> float:
    """Microseconds of codec work per request for one pass of ``workload``."""
    serve, new = adapter.serve, adapter.new
    perf = time.perf_counter
    if workload == "fresh":
        wire = fresh_wire()
        count = max(1, requests // 10)  # construction is the point here; fewer are plenty
        start = perf()
        for _ in range(count):
            serve(new(), wire)
        return (perf() - start) / count * 1e6
    # At most PER_CONNECTION requests per connection, as h2load -n 20000 -c 10 makes them: zttp 0.0.35
    # ends a connection after 4,096 streams ("HTTP/2 flood detected"), whoever the client is.
    setup, reads = open_wire(PER_CONNECTION, 10 if workload == "batch10" else 1)
    spent, done = 0.0, 0
    while done < requests:
        conn = new()
        serve(conn, setup)
        start = perf()
        for chunk in reads:
            serve(conn, chunk)
        spent += perf() - start
        done += PER_CONNECTION
    return spent / done * 1e6


def memory_child(name: str, count: int) -> None:
    """In a fresh process: KiB of resident memory per connection that has served one request."""
    adapter = ADAPTERS[name]
    wire = fresh_wire()
    adapter.serve(adapter.new(), wire)  # imports and first-use allocations before the baseline

    def rss() -> int:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    before = rss()
    held = []
    for _ in range(count):
        conn = adapter.new()
        adapter.serve(conn, wire)
        held.append(conn)
    print(f"{(rss() - before) / count / 1024:.1f}")


def memory_per_connection(name: str, count: int = 2000) -> str:
    done = subprocess.run(
        [sys.executable, __file__, "--memory-child", name, "--requests", str(count)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return f"{done.stdout.strip()} KiB" if done.returncode == 0 else f"failed: {done.stderr.strip()[-80:]}"


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--codecs", default=",".join(ADAPTERS), help="comma list from: " + ", ".join(ADAPTERS))
    p.add_argument("--requests", type=int, default=20000, help="requests per open-connection pass")
    p.add_argument("--rounds", type=int, default=5, help="passes per codec, taking turns (median printed)")
    p.add_argument("--memory", action="store_true", help="also RSS per connection (a process per codec)")
    p.add_argument("--probes", action="store_true", help="run bench/codec_probes.py's limit probes instead")
    p.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.codecs = [c for c in args.codecs.split(",") if c]
    unknown = [c for c in args.codecs if c not in ADAPTERS]
    if unknown:
        p.error(f"unknown codec(s): {', '.join(unknown)}")
    if args.requests < 10 or args.rounds < 1:
        p.error("--requests must be at least 10 and --rounds at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.memory_child:
        memory_child(args.memory_child, args.requests)
        return 0
    if args.probes:
        from bench.codec_probes import main as probes_main

        return probes_main(args.codecs)
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    usable: list[Adapter] = []
    for name in args.codecs:
        adapter = ADAPTERS[name]
        why = adapter.unavailable() or check(adapter)
        version = module_version(adapter.module)
        if why:
            print(f"  {name:<10} {version:<8} skipped: {why}")
            continue
        print(f"  {name:<10} {version:<8} answers correctly; {adapter.what}")
        usable.append(adapter)
    samples: dict[tuple[str, str], list[float]] = {}
    runners: list[Callable[[], None]] = []
    for adapter in usable:
        for workload in WORKLOADS:

            def run(adapter: Adapter = adapter, workload: str = workload) -> None:
                us = time_workload(adapter, workload, args.requests)
                samples.setdefault((adapter.name, workload), []).append(us)

            runners.append(run)
    for _ in range(args.rounds):  # every codec and workload once per round: the machine's drift hits all
        for run in runners:
            run()
    print(f"\nus of server-side codec work per request (median of {args.rounds} rounds; every round after it)")
    print(f"{'codec':<10}" + "".join(f"{w:>12}" for w in WORKLOADS) + "   vs h2 (open)")
    base = statistics.median(samples[("h2", "open")]) if ("h2", "open") in samples else None
    for adapter in usable:
        medians = [statistics.median(samples[(adapter.name, w)]) for w in WORKLOADS]
        ratio = f"{base / medians[1]:8.1f}x" if base else "       -"
        print(f"{adapter.name:<10}" + "".join(f"{m:12.2f}" for m in medians) + f"   {ratio}")
    for adapter in usable:
        for w in WORKLOADS:
            print(f"  {adapter.name:<10} {w:<8} " + ", ".join(f"{v:.2f}" for v in samples[(adapter.name, w)]))
    if args.memory:
        print("\nresident memory per connection that served one request (2,000 held, fresh process each):")
        for adapter in usable:
            print(f"  {adapter.name:<10} {memory_per_connection(adapter.name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
