"""Where an idle connection's memory lives: tracemalloc in the h2gate server, before and after N idle connections.

Run from anywhere:  python bench/idle_trace.py [--connections 300] [--loop trio] [--group file|line|trace]

Starts h2gate (bench/peers.py's command line, ``--loop`` of your choice)
under ``tracemalloc``, takes a snapshot of the server's Python heap, opens N
idle TLS connections the way bench/idle_memory.py does (handshake, SETTINGS
both ways, one ``GET /`` answered), takes a second snapshot, and prints the
growth per connection grouped by source file (or line, or call trace),
largest first, with the RSS growth beside it. tracemalloc sees what Python
allocates (objects, and the buffers of bytes/bytearray); OpenSSL's own
``malloc`` is outside it, so RSS minus the heap is roughly OpenSSL plus the
allocator's overhead. tracemalloc's own bookkeeping inflates RSS, so the RSS
figure here is not the one to quote: bench/idle_memory.py's is. Printed,
never checked.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.idle_memory import long_keep_alive, open_idle
from bench.peers import SPECS
from bench.scenarios import in_workdir, raise_fd_limit, running, server_spec
from bench.servers import RssSampler, ServerSpec

#: Runs in the server process: tracemalloc from the first import, and a thread that writes a snapshot
#: to ``<trigger>.snap`` whenever ``<trigger>`` appears (then removes the trigger).
_LAUNCHER = """
import os, runpy, sys, threading, time, tracemalloc
tracemalloc.start({depth})
trigger = sys.argv.pop(1)
def watch():
    while True:
        time.sleep(0.05)
        if os.path.exists(trigger):
            snap = tracemalloc.take_snapshot()
            snap.dump(trigger + ".part")
            os.rename(trigger + ".part", trigger + ".snap")
            os.remove(trigger)
threading.Thread(target=watch, daemon=True).start()
sys.argv[0] = "h2gate"
runpy.run_module("h2gate", run_name="__main__", alter_sys=True)
"""


def traced(spec: ServerSpec, trigger: Path, depth: int) -> ServerSpec:
    """``spec`` (an h2gate command line) run under tracemalloc, snapshots on request."""
    base = spec.argv

    def argv(port: int, cert: Path, key: Path) -> list[str]:
        args = base(port, cert, key)
        assert args[1:3] == ["-m", "h2gate"], args
        return [args[0], "-c", _LAUNCHER.format(depth=depth), str(trigger), *args[3:]]

    return dataclasses.replace(spec, argv=argv)


def snapshot(trigger: Path, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    import tracemalloc

    done = trigger.with_name(trigger.name + ".snap")
    with contextlib.suppress(FileNotFoundError):
        done.unlink()
    trigger.touch()
    deadline = time.monotonic() + timeout
    while not done.exists():
        if time.monotonic() > deadline:
            raise TimeoutError("the server wrote no snapshot")
        time.sleep(0.05)
    snap = tracemalloc.Snapshot.load(str(done))
    done.unlink()
    return snap.filter_traces([tracemalloc.Filter(False, "<frozen importlib._bootstrap*>")])


def short(path: str) -> str:
    for marker in ("/site-packages/", "/h2gate/h2gate/", "/wt-mem/", "/lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--connections", type=int, default=300)
    p.add_argument("--loop", default="trio", choices=("trio", "asyncio"))
    p.add_argument("--group", default="file", choices=("file", "line", "trace"))
    p.add_argument("--depth", type=int, default=12, help="frames kept per allocation")
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--settle", type=float, default=1.0)
    p.add_argument("--path", default="/", help="what the one request asks for (see bench/idle_memory.py)")
    args = p.parse_args(argv)
    raise_fd_limit()

    def body(workdir: Path) -> None:
        trigger = workdir / "snapshot-now"
        spec = traced(long_keep_alive(server_spec(f"h2gate-{args.loop}")), trigger, args.depth)
        with running(spec, workdir, 30) as server:
            if isinstance(server, str):
                print(f"not started: {server}")
                return
            sampler = RssSampler(server.proc.pid)
            # One connection first, so lazily made module-level state is not charged to the N.
            with contextlib.closing(open_idle(server.port, 10)):
                time.sleep(args.settle)
            time.sleep(args.settle)
            before, rss_before = snapshot(trigger), sampler.sample()
            socks = [open_idle(server.port, 30, path=args.path) for _ in range(args.connections)]
            try:
                time.sleep(args.settle)
                after, rss_after = snapshot(trigger), sampler.sample()
            finally:
                for sock in socks:
                    with contextlib.suppress(OSError):
                        sock.close()
        n = args.connections
        key = {"file": "filename", "line": "lineno", "trace": "traceback"}[args.group]
        stats = after.compare_to(before, key)
        heap = sum(s.size_diff for s in stats)
        print(
            f"{n} idle connections: Python heap +{heap / n / 1024:.1f} KiB each, "
            f"RSS +{(rss_after - rss_before) / n / 1024:.1f} KiB each (under tracemalloc)"
        )
        for stat in stats[: args.top]:
            if args.group == "trace":
                frames = " <- ".join(f"{short(f.filename)}:{f.lineno}" for f in list(stat.traceback)[:6])
                where = frames
            else:
                frame = stat.traceback[0]
                where = short(frame.filename) + (f":{frame.lineno}" if args.group == "line" else "")
            print(f"  {stat.size_diff / n:8.0f} B  {stat.count_diff / n:6.1f} blocks  {where}")

    return in_workdir("h2gate-idle-trace-", body)


if __name__ == "__main__":
    assert "h2gate-trio" in SPECS
    sys.exit(main())
